import type { CombinedError } from "urql";

import { type ReadableError, readableErrors } from "../shared/errors";
import { useFatalErrors } from "./fatal";

function ErrorItem({ error }: { error: ReadableError }) {
  return (
    <div className="error" role="alert" data-testid="error" data-code={error.code}>
      <strong>{error.title}</strong> <span className="error-code">{error.code}</span>
      <div className="error-message">{error.message}</div>
      {error.details.length > 0 && (
        <dl className="error-details">
          {error.details.map(([key, value]) => (
            <div key={key}>
              <dt>{key}</dt>
              <dd>{value}</dd>
            </div>
          ))}
        </dl>
      )}
    </div>
  );
}

/** The server's typed errors (`extensions.code`) as readable messages, each once (a bad prompt target fails every field that needs it alike). */
export function ErrorView({ error }: { error: CombinedError }) {
  const seen = new Set<string>();
  const unique = readableErrors(error).filter((e) => {
    const key = `${e.code}\n${e.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return (
    <>
      {unique.map((e, i) => (
        <ErrorItem key={i} error={e} />
      ))}
    </>
  );
}

export function FatalBanner() {
  const errors = useFatalErrors();
  if (errors.length === 0) return null;
  return (
    <div className="fatal" data-testid="fatal-error">
      {errors.map((e, i) => (
        <ErrorItem key={i} error={e} />
      ))}
    </div>
  );
}
