import { useState } from "react";

import { useScoreExplanationMutation } from "../generated/hooks";
import { ErrorView } from "./ErrorView";
import { reportFatal } from "./fatal";
import { JobProgress } from "./JobProgress";

/** "Score this explanation": starts a `scoreExplanation` job and follows it. */
export function ScorePanel({
  nodeId,
  initialExplanation,
  onScored,
}: {
  nodeId: string;
  initialExplanation: string;
  onScored?: () => void;
}) {
  const [explanation, setExplanation] = useState(initialExplanation);
  const [method, setMethod] = useState("");
  const [maxSequences, setMaxSequences] = useState(4);
  const [{ data, error, fetching }, scoreExplanation] = useScoreExplanationMutation();
  const jobId = data?.scoreExplanation.id;

  const start = () => {
    // urql resolves (never rejects) with errors in `error`; a rejection would be a bug, shown in the banner.
    scoreExplanation({ input: { nodeId, explanation, method: method.trim() || null, maxSequences } }).catch(reportFatal);
  };

  return (
    <section className="panel" data-testid="score-panel">
      <h2>Score an explanation</h2>
      <form
        className="row"
        onSubmit={(event) => {
          event.preventDefault();
          start();
        }}
      >
        <input
          className="grow"
          data-testid="score-explanation"
          value={explanation}
          onChange={(e) => setExplanation(e.target.value)}
          placeholder="an explanation, e.g. “the word ‘the’”"
        />
        <label>
          method{" "}
          <input
            data-testid="score-method"
            value={method}
            size={12}
            placeholder="server default"
            onChange={(e) => setMethod(e.target.value)}
          />
        </label>
        <label>
          sequences{" "}
          <input
            type="number"
            data-testid="score-max-sequences"
            min={1}
            value={maxSequences}
            onChange={(e) => setMaxSequences(Number(e.target.value))}
          />
        </label>
        <button type="submit" data-testid="score-button" disabled={fetching || explanation.trim() === ""}>
          Score this explanation
        </button>
      </form>
      {error && <ErrorView error={error} />}
      {jobId !== undefined && <JobProgress key={jobId} jobId={jobId} onCompleted={onScored} />}
    </section>
  );
}
