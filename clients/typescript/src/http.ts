/** One request to the API and its answer: the key, timeouts and aborts, typed errors. */
import {
  EngramError,
  RequestTimeoutError,
  TransportError,
  UnexpectedAnswerError,
  errorFrom,
} from "./errors.js";
import type { RateLimit } from "./types.js";

export const DEFAULT_URL = "http://127.0.0.1:8000";
const USER_AGENT = "engram-typescript";

/** Options of one call, beside its parameters. */
export interface RequestOptions {
  /** Aborts the call: it then rejects with the signal's reason (an `AbortError`). */
  signal?: AbortSignal;
  /** Milliseconds before the call gives up with `RequestTimeoutError`; 0 waits forever. */
  timeoutMs?: number;
  /** Sent as `X-Request-ID` (1 to 128 of `[A-Za-z0-9._:@/+=-]`), echoed in the API's logs. */
  requestId?: string;
}

type Query = Record<string, string | number | boolean | Date | null | undefined>;

/** What to send: a JSON `body`, or `raw` bytes with their `contentType`, or a `form`. */
export interface Call {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  path: string;
  query?: Query;
  body?: unknown;
  raw?: { content: string | Uint8Array | Blob; contentType: string };
  form?: FormData;
  /** How the answer is read: JSON (default), text, or nothing (204). */
  read?: "json" | "text" | "none";
  /** Error statuses read as answers (a `/readyz` 503). */
  answers?: readonly number[];
}

export interface HttpOptions {
  baseUrl: string;
  apiKey: string | undefined;
  timeoutMs: number;
  headers: Record<string, string>;
  fetch: typeof fetch;
}

/** Sends calls; keeps what the latest answer said of the key's rate limit. */
export class Http {
  rateLimit: RateLimit | null = null;

  constructor(private readonly options: HttpOptions) {}

  async send<T>(call: Call, options: RequestOptions = {}): Promise<T> {
    const url = this.url(call);
    const deadline = new Deadline(options.timeoutMs ?? this.options.timeoutMs, options.signal);
    try {
      const response = await this.options.fetch(url, this.init(call, options, deadline.signal));
      this.rateLimit = rateLimitOf(response.headers) ?? this.rateLimit;
      const text = await response.text(); // within the deadline too
      if (response.status >= 400 && !call.answers?.includes(response.status)) {
        throw errorFrom(response.status, response.statusText, response.headers, text);
      }
      return read<T>(call, text);
    } catch (error) {
      throw deadline.explain(error, `${call.method} ${call.path}`);
    } finally {
      deadline.clear();
    }
  }

  private url(call: Call): URL {
    // URLs resolve "." and ".." segments (escaped too) away: such an id cannot be sent
    if (call.path.split("/").some((part) => /^(\.|%2e){1,2}$/i.test(part))) {
      throw new EngramError(`${call.method} ${call.path}: "." and ".." cannot be sent as path parts`);
    }
    const url = new URL(this.options.baseUrl.replace(/\/+$/, "") + call.path);
    for (const [name, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined && value !== null) {
        url.searchParams.set(name, value instanceof Date ? value.toISOString() : String(value));
      }
    }
    return url;
  }

  private init(call: Call, options: RequestOptions, signal: AbortSignal): RequestInit {
    const headers = new Headers({ "User-Agent": USER_AGENT, ...this.options.headers });
    if (this.options.apiKey) {
      headers.set("Authorization", `Bearer ${this.options.apiKey}`);
    }
    if (options.requestId) {
      headers.set("X-Request-ID", options.requestId);
    }
    let body: BodyInit | undefined;
    if (call.body !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(call.body);
    } else if (call.raw) {
      headers.set("Content-Type", call.raw.contentType);
      body = call.raw.content as BodyInit; // a Uint8Array of any buffer is a body
    } else if (call.form) {
      body = call.form; // fetch sets the multipart Content-Type with its boundary
    }
    return { method: call.method, headers, body, signal };
  }
}

function read<T>(call: Call, text: string): T {
  const kind = call.read ?? "json";
  if (kind !== "json") {
    return (kind === "text" ? text : undefined) as T;
  }
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new UnexpectedAnswerError(`${call.method} ${call.path}: not JSON: ${text.slice(0, 200)}`, {
      cause: error,
    });
  }
}

/** The `RateLimit-*` headers, or null unless all three are whole numbers. */
function rateLimitOf(headers: Headers): RateLimit | null {
  const found = ["Limit", "Remaining", "Reset"].map((name) => headers.get(`RateLimit-${name}`) ?? "");
  if (!found.every((value) => /^\d+$/.test(value))) {
    return null;
  }
  const [limit, remaining, reset] = found.map(Number) as [number, number, number];
  return { limit, remaining, reset };
}

/** A call's own signal: aborted by the caller's signal, or when `timeoutMs` pass. */
export class Deadline {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly timer: ReturnType<typeof setTimeout> | undefined;
  private timedOut = false;
  private readonly onAbort = () => this.controller.abort(this.caller?.reason);

  constructor(
    private readonly timeoutMs: number,
    private readonly caller: AbortSignal | undefined,
  ) {
    this.signal = this.controller.signal;
    if (caller?.aborted) {
      this.controller.abort(caller.reason);
    } else {
      caller?.addEventListener("abort", this.onAbort, { once: true });
    }
    if (timeoutMs > 0) {
      this.timer = setTimeout(() => {
        this.timedOut = true;
        this.controller.abort();
      }, timeoutMs);
    }
  }

  /** What to throw for a failure: the caller's abort reason, a timeout, a transport error. */
  explain(error: unknown, what: string): unknown {
    if (error instanceof EngramError) {
      return error;
    }
    if (this.caller?.aborted) {
      return this.caller.reason;
    }
    if (this.timedOut) {
      return new RequestTimeoutError(`${what}: no answer within ${this.timeoutMs} ms`, { cause: error });
    }
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const reason = cause?.code ?? cause?.message ?? String(error);
    return new TransportError(`${what}: ${reason}`, { cause: error });
  }

  clear(): void {
    clearTimeout(this.timer);
    this.caller?.removeEventListener("abort", this.onAbort);
  }
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
