import { useEffect, useRef } from "react";

import { type JobEventsSubscription, useJobEventsSubscription } from "../generated/hooks";
import { ErrorView } from "./ErrorView";
import { formatNumber } from "./Heatmap";

type JobEvent = JobEventsSubscription["jobEvents"];

/** What the page knows about a job, folded from its event log. */
export interface JobState {
  lastSeq: number;
  done: number;
  total: number | null;
  runningScore: number | null;
  explanation: string | null;
  score: number | null;
  completed: boolean;
  failed: { code: string; message: string } | null;
}

const INITIAL: JobState = {
  lastSeq: -1,
  done: 0,
  total: null,
  runningScore: null,
  explanation: null,
  score: null,
  completed: false,
  failed: null,
};

/**
 * Folds one event into the state. Events carry their position in the log (`seq`); a replayed event
 * (after a reconnect) is ignored, so counting never goes twice.
 */
export function foldJobEvent(state: JobState | undefined, event: JobEvent): JobState {
  const s = state ?? INITIAL;
  if (event.seq <= s.lastSeq) return s;
  const next = { ...s, lastSeq: event.seq };
  switch (event.__typename) {
    case "JobStarted":
      return next;
    case "ExplanationProduced":
      return { ...next, explanation: event.text };
    case "SequenceSimulated":
      return { ...next, runningScore: event.runningScore };
    case "JobProgress":
      return { ...next, done: event.done, total: event.total };
    case "JobCompleted":
      return {
        ...next,
        completed: true,
        score: event.score,
        explanation: event.explanation,
        done: next.total ?? next.done,
      };
    case "JobFailed":
      return { ...next, failed: { code: event.code, message: event.message } };
  }
}

/**
 * A progress bar fed by the `jobEvents` subscription, then the final score (or the job's error).
 * `onCompleted` runs once when the job completes (the node page refetches its explanations then).
 */
export function JobProgress({ jobId, onCompleted }: { jobId: string; onCompleted?: () => void }) {
  const [result] = useJobEventsSubscription<JobState>({ variables: { jobId, after: null } }, (prev, data) =>
    foldJobEvent(prev, data.jobEvents),
  );
  const state = result.data ?? INITIAL;
  // Once per job, however often the parent re-renders with a new callback.
  const notified = useRef(false);
  useEffect(() => {
    if (state.completed && !notified.current) {
      notified.current = true;
      onCompleted?.();
    }
  }, [state.completed, onCompleted]);
  const fraction = state.total ? Math.min(1, state.done / state.total) : state.completed ? 1 : 0;
  return (
    <div className="job" data-testid="job" data-job-id={jobId}>
      <div
        className="progress"
        role="progressbar"
        data-testid="job-progress"
        aria-valuemin={0}
        aria-valuemax={state.total ?? 0}
        aria-valuenow={state.done}
      >
        <div className="progress-fill" style={{ width: `${(fraction * 100).toFixed(1)}%` }} />
      </div>
      <div className="job-status">
        {state.done}/{state.total ?? "?"} sequences simulated
        {state.runningScore !== null && !state.completed && <> · running score {formatNumber(state.runningScore)}</>}
      </div>
      {state.completed && (
        <div className="job-score" data-testid="job-score">
          Score: <strong>{formatNumber(state.score)}</strong>
        </div>
      )}
      {state.failed && (
        <div className="error" role="alert" data-testid="error" data-code={state.failed.code}>
          <strong>The job failed</strong> <span className="error-code">{state.failed.code}</span>
          <div className="error-message">{state.failed.message}</div>
        </div>
      )}
      {result.error && <ErrorView error={result.error} />}
    </div>
  );
}
