// A deliberate misuse of the generated hooks: `tsc -p client/tests/typecheck` must FAIL with exactly the
// errors marked below (tests/test_client_types.py checks codes and lines). If these lines ever typecheck,
// the generated hooks have lost their types.
import { useJobEventsSubscription, useNodePageQuery } from "../../src/generated/hooks";

export function Misuse(): string {
  // DataSource is an enum of the schema: a made-up value is a type error.
  const [page] = useNodePageQuery({ variables: { id: "tiny-gpt2/mlp_neuron/0/1", first: 5, source: "SOMETIMES" } }); // expect TS2322
  // `kurtosis` lives under `stats`, not on the node: the result type only has what the operation selects.
  const kurtosis: number = page.data?.node?.kurtosis ?? 0; // expect TS2339
  // The subscription's variables are required: `jobId` cannot be left out.
  useJobEventsSubscription({ variables: { after: 0 } }); // expect TS2741
  return String(kurtosis);
}
