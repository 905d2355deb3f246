import { useDatasetsQuery, useModelInfoQuery } from "../../generated/hooks";
import type { NodeKind } from "../../generated/hooks";
import { ErrorView } from "../ErrorView";
import { browseRoute, linkProps, nodeRoute } from "../routing";
import { enumLabel } from "../tokens/Tokens";

/** Where to start: the model, a layer × kind grid to browse, and the datasets the server reads. */
export function HomePage() {
  const [{ data, error }] = useModelInfoQuery();
  const [{ data: sets }] = useDatasetsQuery();
  if (error) return <ErrorView error={error} />;
  const m = data?.modelInfo;
  if (!m) return null;
  const kinds: [NodeKind, string, string | null][] = [
    ["MLP_NEURON", "MLP neurons", null],
    ["ATTENTION_HEAD", "attention heads", null],
  ];
  if (m.mlpAutoencoderName) kinds.push(["MLP_AUTOENCODER_LATENT", `${m.mlpAutoencoderName} latents`, m.mlpAutoencoderName]);
  if (m.attentionAutoencoderName) {
    kinds.push(["ATTENTION_AUTOENCODER_LATENT", `${m.attentionAutoencoderName} latents`, m.attentionAutoencoderName]);
  }
  const layers = Array.from({ length: m.nLayers ?? 0 }, (_, l) => l);
  const example = `${m.modelName}/mlp_neuron/${Math.max(0, (m.nLayers ?? 1) - 1)}/0`;
  return (
    <div data-testid="home">
      <section className="panel">
        <h2>Browse {m.modelName}</h2>
        {layers.length === 0 ? (
          <div className="muted">The server does not know this model's shape; open a node by id above.</div>
        ) : (
          <table className="layer-grid" data-testid="layer-grid">
            <thead>
              <tr>
                <th />
                {layers.map((l) => (
                  <th key={l}>layer {l}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {kinds.map(([kind, label, ae]) => (
                <tr key={kind}>
                  <th>{label}</th>
                  {layers.map((l) => (
                    <td key={l}>
                      <a data-testid={`browse-${kind}-${l}`} {...linkProps(browseRoute(m.modelName, kind, l, ae))}>
                        browse
                      </a>
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <p className="muted">
          Or open a node by id, e.g. <a {...linkProps(nodeRoute(example))}>{example}</a>.
        </p>
      </section>
      {sets && (
        <section className="panel" data-testid="datasets">
          <h2>Datasets this server reads ({sets.datasets.length})</h2>
          <ul>
            {sets.datasets.map((d) => (
              <li key={d.name}>
                <code>{d.name}</code> <span className="muted">{enumLabel(d.kind)}</span>
              </li>
            ))}
          </ul>
        </section>
      )}
    </div>
  );
}
