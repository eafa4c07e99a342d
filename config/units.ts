// Parsers of the human forms of sizes and durations, pure (no schema, no environment), so that the
// command-line client (cli/) reads `--chunk-size 8MiB` exactly as the server reads S3_PART_SIZE.
const MiB = 1024 * 1024;

/** Parses sizes such as `52428800`, `50MiB`, `5GiB`, `1.5GB` into bytes. */
export function parseByteSize(raw: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$/i.exec(raw);
  if (!match) return undefined;
  const unit = (match[2] ?? '').toLowerCase().replace(/b$/, '');
  const powers: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 1024, mi: MiB, gi: 1024 * MiB, ti: 1024 * 1024 * MiB };
  const factor = powers[unit];
  if (factor === undefined) return undefined;
  const bytes = Number(match[1]) * factor;
  return Number.isSafeInteger(Math.round(bytes)) ? Math.round(bytes) : undefined;
}

/** Parses durations such as `86400` (seconds), `90s`, `15m`, `24h`, `7d` into milliseconds. */
export function parseDuration(raw: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(raw);
  if (!match) return undefined;
  const factors: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  return Math.round(Number(match[1]) * (factors[(match[2] ?? 's').toLowerCase()] ?? 1000));
}
