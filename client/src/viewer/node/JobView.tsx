import { useEffect, useRef } from "react";

import { type JobEventsSubscription, useJobEventsSubscription } from "../../generated/hooks";
import { ErrorView } from "../ErrorView";
import { TokenStrip, argmax, centredWindow, formatNumber } from "../tokens/Tokens";

type JobEvent = JobEventsSubscription["jobEvents"];
type Simulated = Extract<JobEvent, { __typename: "SequenceSimulated" }>;

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
  /** Scored sequences by index: what the simulator predicted next to the real activations. */
  sequences: Simulated[];
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
  sequences: [],
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
      return {
        ...next,
        runningScore: event.runningScore,
        sequences: [...next.sequences.filter((q) => q.index !== event.index), event].sort((a, b) => a.index - b.index),
      };
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

/** One scored sequence: the real activations above, the simulator's prediction below, and their correlation. */
function SequenceRow({ sequence, actualMax }: { sequence: Simulated; actualMax: number }) {
  if (sequence.actual.length === 1 && sequence.tokens.length > 1) {
    // attention heads: one labelled token pair per event (P(label 1) against the 0/1 label)
    return (
      <div className="sequence" data-testid="sequence" data-index={sequence.index}>
        <span className="muted">#{sequence.index}</span> token pair labelled{" "}
        <strong>{formatNumber(sequence.actual[0], 0)}</strong>, predicted P(1) ={" "}
        <strong>{formatNumber(sequence.predicted[0], 2)}</strong>
      </div>
    );
  }
  const actualNorm = sequence.actual.map((a) => (actualMax > 0 ? Math.max(a, 0) / actualMax : 0));
  const predictedNorm = sequence.predicted.map((p) => p / 10);
  // Both rows show the same tokens, centred on the real max.
  const window = centredWindow(sequence.tokens.length, argmax(sequence.actual));
  return (
    <div className="sequence" data-testid="sequence" data-index={sequence.index}>
      <div className="sequence-head">
        <span className="muted">#{sequence.index}</span> correlation{" "}
        <strong data-testid="sequence-score">{formatNumber(sequence.sequenceScore)}</strong>
      </div>
      <div className="sequence-row">
        <span className="sequence-label">actual</span>
        <TokenStrip
          tokens={sequence.tokens}
          values={sequence.actual}
          normalized={actualNorm}
          window={window}
          testId="sequence-actual"
        />
      </div>
      <div className="sequence-row">
        <span className="sequence-label">simulated</span>
        <TokenStrip
          tokens={sequence.tokens}
          values={sequence.predicted}
          normalized={predictedNorm}
          window={window}
          valueLabel="predicted (0-10)"
          testId="sequence-predicted"
        />
      </div>
    </div>
  );
}

/**
 * A job followed through the `jobEvents` subscription: the explanation as soon as it is written, a progress
 * bar over the scored sequences, each sequence's simulated vs actual activations, and the final score (or
 * the job's error). `requested` is the number of sequences the user asked for: when the node's valid split
 * holds fewer, the page says so instead of silently scoring fewer. `onCompleted` runs once at the end.
 */
export function JobView({
  jobId,
  requested,
  onCompleted,
}: {
  jobId: string;
  requested: number | null;
  onCompleted?: () => void;
}) {
  const [result] = useJobEventsSubscription<JobState>({ variables: { jobId, after: null } }, (prev, data) =>
    foldJobEvent(prev, data.jobEvents),
  );
  const state = result.data ?? INITIAL;
  const notified = useRef(false);
  useEffect(() => {
    if (state.completed && !notified.current) {
      notified.current = true;
      onCompleted?.();
    }
  }, [state.completed, onCompleted]);
  const fraction = state.total ? Math.min(1, state.done / state.total) : state.completed ? 1 : 0;
  const actualMax = Math.max(0, ...state.sequences.flatMap((s) => s.actual));
  return (
    <div className="job" data-testid="job" data-job-id={jobId}>
      {state.explanation !== null && (
        <div className="job-explanation" data-testid="job-explanation">
          Explanation: <q>{state.explanation}</q>
        </div>
      )}
      {(state.total !== null || !state.completed) && (
        <>
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
        </>
      )}
      {requested !== null && state.total !== null && state.total < requested && (
        <div className="notice" data-testid="sequence-notice">
          Scoring on {state.total} sequences: {requested} were asked for, but this node's valid split holds only{" "}
          {state.total} (top records 2, 6, 10, … and random records 1, 4, 7, …).
        </div>
      )}
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
      {state.sequences.length > 0 && (
        <details className="sequences" data-testid="sequences" open>
          <summary>
            Simulated vs actual, per sequence ({state.sequences.length}
            {state.total !== null ? ` of ${state.total}` : ""})
          </summary>
          {state.sequences.map((s) => (
            <SequenceRow key={s.index} sequence={s} actualMax={actualMax} />
          ))}
        </details>
      )}
    </div>
  );
}
