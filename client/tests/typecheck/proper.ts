// The same hooks used correctly, compiled alongside misuse.ts: every error tsc reports must come from
// misuse.ts's marked lines, never from here.
import { useJobEventsSubscription, useNodePageQuery } from "../../src/generated/hooks";

export function Proper(): string {
  const [page] = useNodePageQuery({ variables: { id: "tiny-gpt2/mlp_neuron/0/1", first: 5, source: "STORED" } });
  const kurtosis: number | null = page.data?.node?.stats.kurtosis ?? null;
  useJobEventsSubscription({ variables: { jobId: "job", after: 0 } });
  return String(kurtosis);
}
