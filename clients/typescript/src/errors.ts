/** What the client throws: one root, the API's answers by status, and transport failures. */

/** Base of every error the Engram client throws. */
export class EngramError extends Error {
  override name = "EngramError";
}

/** The API could not be reached (refused, reset, DNS, ...). */
export class TransportError extends EngramError {
  override name = "TransportError";
}

/** The API did not answer within the request's `timeoutMs`. */
export class RequestTimeoutError extends TransportError {
  override name = "RequestTimeoutError";
}

/** The API answered with something the client cannot read (another version?). */
export class UnexpectedAnswerError extends EngramError {
  override name = "UnexpectedAnswerError";
}

/** One entry of an error's `details`: where the request broke a rule. */
export type ErrorDetails = Record<string, unknown>[];

/** What an `ApiError` is built from: the answer's status, its error body and headers. */
export interface ApiErrorFields {
  status: number;
  code: string;
  message: string;
  details?: ErrorDetails | null;
  requestId?: string | null;
  retryAfter?: number | null;
}

/** The API answered with an error: `{"error": {"code", "message", "details"}}`. */
export class ApiError extends EngramError {
  override name = "ApiError";
  /** The HTTP status. */
  readonly status: number;
  /** The API's error code: `invalid_input`, `not_found`, ... (docs/api.md, "Errors"). */
  readonly code: string;
  /** Where the request broke a rule, when the API said. */
  readonly details: ErrorDetails | null;
  /** The answer's `X-Request-ID`: quote it when reporting a problem. */
  readonly requestId: string | null;
  /** Seconds to wait before trying again, when the API said (429, 503). */
  readonly retryAfter: number | null;

  constructor(fields: ApiErrorFields) {
    super(fields.message);
    this.status = fields.status;
    this.code = fields.code;
    this.details = fields.details ?? null;
    this.requestId = fields.requestId ?? null;
    this.retryAfter = fields.retryAfter ?? null;
  }

  override toString(): string {
    return `${this.name}: ${this.status} ${this.code}: ${this.message}`;
  }
}

/** 400, 413, 415, 422: the request broke a rule; `details` says where. */
export class InvalidRequestError extends ApiError {
  override name = "InvalidRequestError";
}

/** 401: no key, or an unknown, malformed or revoked key. */
export class AuthenticationError extends ApiError {
  override name = "AuthenticationError";
}

/** 403: the key may not act on this user, or the route needs an admin key. */
export class PermissionDeniedError extends ApiError {
  override name = "PermissionDeniedError";
}

/** 404: no such object for this user (or no such route). */
export class NotFoundError extends ApiError {
  override name = "NotFoundError";
}

/** 409: a client-chosen id already names other content. */
export class ConflictError extends ApiError {
  override name = "ConflictError";
}

/** 429: the key spent its budget; try again after `retryAfter` seconds. */
export class RateLimitError extends ApiError {
  override name = "RateLimitError";
}

/** 5xx: the service failed; the request may be tried again. */
export class ServerError extends ApiError {
  override name = "ServerError";
}

/** 503: the database is unreachable; try again after `retryAfter` seconds. */
export class UnavailableError extends ServerError {
  override name = "UnavailableError";
}

const BY_STATUS: Record<number, new (fields: ApiErrorFields) => ApiError> = {
  400: InvalidRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: InvalidRequestError,
  415: InvalidRequestError,
  422: InvalidRequestError,
  429: RateLimitError,
  503: UnavailableError,
};

/** The typed error for an answer of status 400 or more, from its body and headers. */
export function errorFrom(status: number, statusText: string, headers: Headers, body: string): ApiError {
  const Kind = BY_STATUS[status] ?? (status >= 500 ? ServerError : ApiError);
  const detail = errorBody(body) ?? {
    // not the API's shape: a proxy's page, say
    code: `http_${status}`,
    message: body.slice(0, 500) || statusText,
  };
  return new Kind({
    status,
    ...detail,
    requestId: headers.get("x-request-id"),
    retryAfter: seconds(headers.get("retry-after")),
  });
}

function errorBody(body: string): Pick<ApiErrorFields, "code" | "message" | "details"> | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return null;
  }
  const error = (parsed as { error?: unknown } | null)?.error as Record<string, unknown> | undefined;
  if (typeof error?.code !== "string" || typeof error.message !== "string") {
    return null;
  }
  const details = Array.isArray(error.details) ? (error.details as ErrorDetails) : null;
  return { code: error.code, message: error.message, details };
}

function seconds(value: string | null): number | null {
  // an HTTP date is rare enough here to leave to the caller (null)
  const number = value === null || value.trim() === "" ? Number.NaN : Number(value);
  return Number.isFinite(number) ? number : null;
}
