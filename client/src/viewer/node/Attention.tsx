import type { RecordFieldsFragment } from "../../generated/hooks";
import { TokenStrip, centredWindow, formatNumber } from "../tokens/Tokens";

/**
 * Attention heads: a record holds one value per (query, key) token pair (`attentionRows[q][k]`, k <= q,
 * the original's attn_write_norm). The list shows each query token with its strongest pair; a selected
 * record shows, for the picked query token, the value of every key it attends to, and the whole pattern
 * as a query × key heatmap. Values are scaled by the node's max activation, as the server normalizes.
 */

export interface HeadRecord {
  tokens: readonly string[];
  attentionRows: readonly (readonly number[])[];
}

/** The query token of the record's strongest pair. */
export function strongestQuery(rows: readonly (readonly number[])[]): number {
  let best = 0;
  let value = -Infinity;
  rows.forEach((row, q) => {
    const m = row.length === 0 ? -Infinity : Math.max(...row);
    if (m > value) {
      value = m;
      best = q;
    }
  });
  return best;
}

export function perQueryMax(rows: readonly (readonly number[])[]): number[] {
  return rows.map((row) => (row.length === 0 ? 0 : Math.max(...row)));
}

function scaled(values: readonly number[], maxActivation: number): number[] {
  return values.map((v) => (maxActivation > 0 ? Math.max(v / maxActivation, 0) : 0));
}

/** The record list: each query token coloured by its strongest pair, centred on the record's strongest. */
export function HeadRecords({
  title,
  records,
  maxActivation,
  source,
  selected,
  full,
  onSelect,
  testId,
}: {
  title: string;
  records: RecordFieldsFragment[];
  maxActivation: number;
  source: "top" | "random";
  selected: string | null;
  full: boolean;
  onSelect: (record: string, query: number) => void;
  testId: string;
}) {
  return (
    <section className="panel" data-testid={testId}>
      <h2>
        {title} <span className="muted">({records.length}; each query token shows its strongest pair; click one to see its keys)</span>
      </h2>
      {records.length === 0 && <div className="muted">none</div>}
      {records.map((r, i) => {
        const rows = r.attentionRows ?? [];
        const values = perQueryMax(rows);
        const q = strongestQuery(rows);
        const key = `${source}:${i}`;
        return (
          <div
            className={`record${selected === key ? " selected" : ""}`}
            key={i}
            data-testid="record"
            data-record={key}
            data-max-index={q}
          >
            <span className="record-max" data-testid="record-max">
              {formatNumber(values[q])}
            </span>
            <TokenStrip
              tokens={r.tokens}
              values={values}
              normalized={scaled(values, maxActivation)}
              window={full ? undefined : centredWindow(r.tokens.length, q)}
              marked={new Set([q])}
              onPick={(query) => onSelect(key, query)}
            />
          </div>
        );
      })}
    </section>
  );
}

const CELL = 9;

/** One record in detail: pick a query token, see its keys highlighted; the pattern as a heatmap. */
export function AttentionDetail({
  record,
  label,
  query,
  onQuery,
}: {
  record: HeadRecord;
  label: string;
  query: number;
  maxActivation?: number;
  onQuery: (query: number) => void;
}) {
  // Scaled to this record's strongest pair, so a record's pattern is visible whatever the node's max.
  const maxActivation = Math.max(0, ...record.attentionRows.flatMap((row) => row));
  const n = record.tokens.length;
  const q = Math.min(Math.max(query, 0), n - 1);
  const row = record.attentionRows[q] ?? [];
  const keyValues = record.tokens.map((_, k) => (k <= q ? (row[k] ?? 0) : 0));
  const strongestKey = keyValues.indexOf(Math.max(...keyValues));
  return (
    <section className="panel attention-detail" data-testid="attention-detail" data-query={q} data-record={label}>
      <h2>
        {label}: query token {q} <code>{JSON.stringify(record.tokens[q] ?? "")}</code>
        <span className="muted">
          {" "}
          · strongest key {strongestKey} <code>{JSON.stringify(record.tokens[strongestKey] ?? "")}</code> (
          {formatNumber(keyValues[strongestKey])})
        </span>
      </h2>
      <div className="muted">
        Keys coloured by this query's value for each (scaled to the record's strongest pair,{" "}
        {formatNumber(maxActivation)}); click any token to make it the query.
      </div>
      <TokenStrip
        tokens={record.tokens}
        values={keyValues}
        normalized={scaled(keyValues, maxActivation)}
        marked={new Set([q])}
        onPick={onQuery}
        valueLabel="value as a key"
        testId="attention-keys"
      />
      <svg
        className="attention-matrix"
        data-testid="attention-matrix"
        width={n * CELL + 1}
        height={n * CELL + 1}
        role="img"
        aria-label="query × key heatmap"
      >
        {record.attentionRows.map((values, qi) =>
          values.map((v, k) => (
            <rect
              key={`${qi}-${k}`}
              x={k * CELL}
              y={qi * CELL}
              width={CELL - 1}
              height={CELL - 1}
              className={qi === q ? "cell selected-row" : "cell"}
              fill={`rgba(22, 163, 74, ${Math.min(1, maxActivation > 0 ? Math.max(v, 0) / maxActivation : 0).toFixed(3)})`}
              onClick={() => onQuery(qi)}
            >
              <title>
                query {qi} {JSON.stringify(record.tokens[qi] ?? "")} → key {k} {JSON.stringify(record.tokens[k] ?? "")}:{" "}
                {formatNumber(v)}
              </title>
            </rect>
          )),
        )}
      </svg>
      <div className="muted">Rows: query tokens (top to bottom); columns: key tokens (left to right).</div>
    </section>
  );
}
