/**
 * The TypeScript client of the Engram HTTP API.
 *
 *     import { Engram } from "@engram/client";
 *
 *     const engram = new Engram({ baseUrl: "http://127.0.0.1:8000", apiKey });
 *     await engram.addMemories("alice", ["Alice drinks her coffee black."], { wait: true });
 *     const { results } = await engram.search("alice", { query: "what does alice drink?", k: 1 });
 */
export { Engram, type EngramOptions, type PollOptions } from "./client.js";
export type { RequestOptions } from "./http.js";
export { Listing } from "./listing.js";
export {
  ApiError,
  AuthenticationError,
  ConflictError,
  EngramError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  RequestTimeoutError,
  ServerError,
  TransportError,
  UnavailableError,
  UnexpectedAnswerError,
  type ApiErrorFields,
  type ErrorDetails,
} from "./errors.js";
export type * from "./types.js";
export type { components, operations, paths } from "./schema.js";
