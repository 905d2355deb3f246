import { useModelInfoQuery } from "../../generated/hooks";
import type { NodeKind } from "../../generated/hooks";
import { browseRoute, linkProps, nodeRoute, splitNodeId } from "../routing";

/** How many nodes of `kind` a layer has, when the server knows the model's shape. */
export function useLayerSize(model: string, kind: NodeKind, autoencoder: string | null): { layers: number | null; size: number | null } {
  const [{ data }] = useModelInfoQuery();
  const m = data?.modelInfo;
  if (!m || m.modelName !== model) return { layers: null, size: null };
  const size =
    kind === "MLP_NEURON"
      ? m.dMlp
      : kind === "ATTENTION_HEAD"
        ? m.nHeads
        : kind === "MLP_AUTOENCODER_LATENT" && autoencoder === m.mlpAutoencoderName
          ? m.mlpAutoencoderLatents
          : kind === "ATTENTION_AUTOENCODER_LATENT" && autoencoder === m.attentionAutoencoderName
            ? m.attentionAutoencoderLatents
            : null;
  return { layers: m.nLayers, size };
}

/** Links to the nodes next to this one: the previous and next index, the same index one layer down and up. */
export function Neighbours({ id, kind, autoencoder }: { id: string; kind: NodeKind; autoencoder: string | null }) {
  const parts = splitNodeId(id);
  const { layers, size } = useLayerSize(parts?.model ?? "", kind, autoencoder);
  if (parts === null) return null;
  const { model, segment, layer, index } = parts;
  const at = (l: number, i: number) => `${model}/${segment}/${l}/${i}`;
  const links: { label: string; target: string; testId: string }[] = [];
  if (index > 0) links.push({ label: `← index ${index - 1}`, target: at(layer, index - 1), testId: "prev-index" });
  if (size === null || index + 1 < size) links.push({ label: `index ${index + 1} →`, target: at(layer, index + 1), testId: "next-index" });
  if (layer > 0) links.push({ label: `↓ layer ${layer - 1}`, target: at(layer - 1, index), testId: "prev-layer" });
  if (layers === null || layer + 1 < layers) links.push({ label: `↑ layer ${layer + 1}`, target: at(layer + 1, index), testId: "next-layer" });
  return (
    <nav className="neighbours" data-testid="neighbours">
      {links.map((l) => (
        <a key={l.testId} data-testid={l.testId} {...linkProps(nodeRoute(l.target))}>
          {l.label}
        </a>
      ))}
      <a data-testid="browse-layer" {...linkProps(browseRoute(model, kind, layer, autoencoder))}>
        all of layer {layer}
        {size !== null ? ` (${size})` : ""}
      </a>
    </nav>
  );
}
