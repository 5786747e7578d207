/**
 * The server's log: pino, one line per event with its time and level; JSON for log collectors, or readable lines
 * (pino-pretty) when the output is a terminal. Requests get one line each: method, path, status and duration, never
 * headers or query strings, which is where tokens and presigned signatures travel.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export interface RequestLine {
  method: string;
  path: string;
  status: number;
  ms: number;
}

export function serverLogger({ pretty = process.stdout.isTTY === true, destination }: { pretty?: boolean; destination?: DestinationStream } = {}): Logger {
  const options = { base: { service: 'splitfrozen-server' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (destination) return pino(options, destination);
  return pretty
    ? pino(options, pino.transport({ target: 'pino-pretty', options: { translateTime: 'SYS:standard', ignore: 'pid,hostname,service,req' } }))
    : pino(options);
}

/** A request's line at info (errors and refusals at warn), its fields as JSON keys. */
export function logRequest(logger: Logger, r: RequestLine): void {
  logger[r.status >= 500 ? 'error' : r.status >= 400 ? 'warn' : 'info']({ req: r }, `${r.method} ${r.path} ${r.status} ${r.ms} ms`);
}
