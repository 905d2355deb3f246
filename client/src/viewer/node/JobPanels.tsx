import { useState } from "react";

import type { ExplainMethod, ScoreMethod } from "../../generated/graphql";
import { useExplainNodeMutation, useJobQuery, useScoreExplanationMutation } from "../../generated/hooks";
import { ErrorView } from "../ErrorView";
import { reportFatal } from "../fatal";
import { type Route, navigate } from "../routing";
import { JobView } from "./JobView";

type NodeRoute = Extract<Route, { page: "node" }>;

const SCORE_METHODS: readonly [ScoreMethod | "", string][] = [
  ["TOKEN_LOOKUP", "token-lookup (no LLM)"],
  ["EMBEDDING", "embedding (local model)"],
  ["BASELINE", "baseline (LLM)"],
  ["ALL_AT_ONCE", "all-at-once (LLM logprobs)"],
  ["DETECTION", "detection (LLM)"],
  ["FUZZING", "fuzzing (LLM)"],
  ["", "don't score"],
];

/**
 * A method as a person types it (token-lookup) or as the enum names it (TOKEN_LOOKUP); empty: the server's
 * default. A name that is no method comes back as the server's typed error.
 */
function member<T extends string>(typed: string): T | null {
  const text = typed.trim();
  return text ? (text.toUpperCase().replace(/-/g, "_") as T) : null;
}

/** The job in the URL (`job=`), as its own query says it was asked for; followed to its end. */
function FollowedJob({ jobId, onCompleted }: { jobId: string; onCompleted: () => void }) {
  const [{ data, error }] = useJobQuery({ variables: { id: jobId } });
  if (error) return <ErrorView error={error} />;
  const job = data?.job;
  if (!job) return null;
  return (
    <div data-testid="followed-job" data-kind={job.kind}>
      <div className="muted">
        {job.kind === "EXPLAIN" ? "Explaining" : "Scoring"} with {job.method}
        {job.scoreMethod ? `, scored with ${job.scoreMethod}` : ""}
        {job.maxSequences !== null ? ` on up to ${job.maxSequences} sequences` : ""} · job {job.id}
      </div>
      <JobView key={jobId} jobId={jobId} requested={job.maxSequences} onCompleted={onCompleted} />
    </div>
  );
}

/** "Explain" and "Score": each starts a job (the server's id goes into the URL) and the page follows it. */
export function JobPanels({
  route,
  initialExplanation,
  onStored,
}: {
  route: NodeRoute;
  initialExplanation: string;
  onStored: () => void;
}) {
  const nodeId = route.id;
  const [explanation, setExplanation] = useState(initialExplanation);
  const [method, setMethod] = useState("");
  const [scoreMethod, setScoreMethod] = useState<ScoreMethod | "">("TOKEN_LOOKUP");
  const [explainMethod, setExplainMethod] = useState("");
  const [maxSequences, setMaxSequences] = useState(10);
  const [explained, explainNode] = useExplainNodeMutation();
  const [scored, scoreExplanation] = useScoreExplanationMutation();
  const follow = (id: string | undefined) => {
    if (id !== undefined) navigate({ ...route, job: id }, true);
  };

  const explain = () => {
    // urql resolves (never rejects) with errors in `error`; a rejection would be a bug, shown in the banner.
    explainNode({
      input: {
        nodeId,
        method: member<ExplainMethod>(explainMethod),
        scoreMethod: scoreMethod || null,
        maxSequences: scoreMethod ? maxSequences : null,
      },
    })
      .then((r) => follow(r.data?.explainNode.id))
      .catch(reportFatal);
  };
  const score = () => {
    scoreExplanation({ input: { nodeId, explanation, method: member<ScoreMethod>(method), maxSequences } })
      .then((r) => follow(r.data?.scoreExplanation.id))
      .catch(reportFatal);
  };

  return (
    <section className="panel" data-testid="job-panels">
      <h2>Explain and score</h2>
      <form
        className="row"
        data-testid="explain-panel"
        onSubmit={(event) => {
          event.preventDefault();
          explain();
        }}
      >
        <label>
          explainer{" "}
          <input
            data-testid="explain-method"
            value={explainMethod}
            size={12}
            placeholder="server default"
            onChange={(e) => setExplainMethod(e.target.value)}
          />
        </label>
        <label>
          then score with{" "}
          <select
            data-testid="explain-score-method"
            value={scoreMethod}
            onChange={(e) => setScoreMethod(e.target.value as ScoreMethod | "")}
          >
            {SCORE_METHODS.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" data-testid="explain-button" disabled={explained.fetching}>
          Explain
        </button>
      </form>
      {explained.error && <ErrorView error={explained.error} />}
      <form
        className="row"
        data-testid="score-panel"
        onSubmit={(event) => {
          event.preventDefault();
          score();
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
        <button type="submit" data-testid="score-button" disabled={scored.fetching || explanation.trim() === ""}>
          Score this explanation
        </button>
      </form>
      {scored.error && <ErrorView error={scored.error} />}
      {route.job !== null && <FollowedJob key={route.job} jobId={route.job} onCompleted={onStored} />}
    </section>
  );
}
