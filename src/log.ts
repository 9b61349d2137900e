/**
 * Structured logging: one JSON object per line on the console, which Workers Logs and
 * `wrangler tail` index. Callers must never pass token text or claims other than `sub`.
 */
export type LogFields = Record<string, string | number | boolean | null | undefined>

export function log(fields: LogFields): void {
  console.log(JSON.stringify({ level: 'info', ...fields }))
}
