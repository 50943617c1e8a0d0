/** `Engram`: every operation of the Engram HTTP API (docs/api.md describes each route). */
import { DEFAULT_URL, Http, pause, type Call, type RequestOptions } from "./http.js";
import { Listing, type Page } from "./listing.js";
import type { components } from "./schema.js";
import type {
  AcceptedDocuments,
  AddDocumentsParams,
  AddedMemory,
  AddMemoriesParams,
  ApiKey,
  AuditEntry,
  AuditLogParams,
  Batch,
  Chunk,
  Context,
  ContextRequest,
  CreatedKey,
  DeleteSessionParams,
  Document,
  DocumentIn,
  DroppedSpace,
  Erased,
  FailedJob,
  FailedJobsParams,
  Health,
  Imported,
  ListDocumentsParams,
  ListKeysParams,
  ListMemoriesParams,
  ListMessagesParams,
  ListSessionsParams,
  ListUsersParams,
  Memory,
  MemoryChange,
  MemoryIn,
  Message,
  MessageIn,
  RateLimit,
  Readiness,
  RetriedJob,
  SearchRequest,
  SearchResults,
  ServiceStatus,
  Session,
  SessionIn,
  SpaceInfo,
  StatusParams,
  Upload,
  UploadParams,
  UserSummary,
  WaitParams,
} from "./types.js";

type Schemas = components["schemas"];
const NDJSON = "application/x-ndjson";

/** How an `Engram` client reaches the API. */
export interface EngramOptions {
  /** The API's URL; default `$ENGRAM_URL`, else `http://127.0.0.1:8000`. */
  baseUrl?: string;
  /** The key, sent as a Bearer token; default `$ENGRAM_API_KEY`. */
  apiKey?: string;
  /**
   * Milliseconds a call may take (default 60,000; 0 waits forever): keep it above the
   * server's wait for a write with `wait: true` (30 s by default).
   */
  timeoutMs?: number;
  /** Headers sent with every call. */
  headers?: Record<string, string>;
  /** The `fetch` to use; default the global one. */
  fetch?: typeof fetch;
}

/** Options of a poll: how long to wait in all, and between two looks. */
export interface PollOptions extends RequestOptions {
  /** Milliseconds to wait in all before answering what is there. */
  waitMs?: number;
  /** Milliseconds between two looks. */
  intervalMs?: number;
}

/**
 * A client of the Engram HTTP API. Each method is one call (or, for `waitFor...`, a poll);
 * a listing (`list...`, `failedJobs`, `auditLog`) is a `Listing` that pages as it is read.
 * Errors are `ApiError` subclasses by status, `TransportError` when the API cannot be
 * reached or does not answer in time; an aborted call rejects with its signal's reason.
 * The client never sends a call twice by itself: `retryAfter` on an error says when to.
 */
export class Engram {
  readonly #http: Http;

  constructor(options: EngramOptions = {}) {
    const environ = globalThis.process?.env ?? {};
    this.#http = new Http({
      baseUrl: options.baseUrl ?? environ.ENGRAM_URL ?? DEFAULT_URL,
      apiKey: options.apiKey ?? environ.ENGRAM_API_KEY,
      timeoutMs: options.timeoutMs ?? 60_000,
      headers: options.headers ?? {},
      fetch: options.fetch ?? globalThis.fetch.bind(globalThis),
    });
  }

  /** The key's rate limit as the latest answer carrying it said (null before any did). */
  get rateLimit(): RateLimit | null {
    return this.#http.rateLimit;
  }

  // --- health and status ---------------------------------------------------------------

  /** Liveness: the process serves. */
  healthz(options?: RequestOptions): Promise<Health> {
    return this.#send({ method: "GET", path: "/healthz" }, options);
  }

  /** Readiness, with what is missing (a 503 is an answer here, not an error). */
  readyz(options?: RequestOptions): Promise<Readiness> {
    return this.#send({ method: "GET", path: "/readyz", answers: [503] }, options);
  }

  /** The Prometheus text of `/metrics` (an admin key, or the metrics token as the key). */
  metrics(options?: RequestOptions): Promise<string> {
    return this.#send({ method: "GET", path: "/metrics", read: "text" }, options);
  }

  /** The embedding work at a glance: jobs by space and state, the queue, the `top`
   * commonest errors (admin). */
  status(params: StatusParams = {}, options?: RequestOptions): Promise<ServiceStatus> {
    return this.#send({ method: "GET", path: "/v1/status", query: params }, options);
  }

  // --- memories --------------------------------------------------------------------------

  /** Add memories (text, or `{content, metadata, session_id, ...}`), answered in order; with
   * `wait` the answer comes once each is `ready` or `failed` (or the server's wait runs out:
   * then some are still `pending`). With `replace` a known id with other content takes the
   * new one; `delete` deletes memories in the same transaction: all of it, or nothing. */
  async addMemories(
    userId: string,
    memories: ReadonlyArray<string | MemoryIn>,
    params: AddMemoriesParams = {},
    options?: RequestOptions,
  ): Promise<AddedMemory[]> {
    const items = memories.map((memory) => (typeof memory === "string" ? { content: memory } : memory));
    const body: Schemas["AddMemories"] = { memories: items, ...params };
    const path = route`/v1/users/${userId}/memories`;
    const answer = await this.#send<Schemas["AddedMemories"]>({ method: "POST", path, body }, options);
    return answer.memories;
  }

  /** Every memory of the user, newest first, `limit` a page; `filter` keeps those whose
   * metadata matches (search's filter language). */
  listMemories(userId: string, params: ListMemoriesParams = {}, options?: RequestOptions): Listing<Memory> {
    const { filter, ...rest } = params;
    const query = { ...rest, filter: filter === undefined || filter === null ? filter : JSON.stringify(filter) };
    return this.#cursorListing(route`/v1/users/${userId}/memories`, "memories", query, options);
  }

  /** One memory. */
  getMemory(userId: string, memoryId: string, options?: RequestOptions): Promise<Memory> {
    return this.#send({ method: "GET", path: route`/v1/users/${userId}/memories/${memoryId}` }, options);
  }

  /** Change what is given (null clears importance or TTL); new content is embedded again,
   * so the memory is `pending` until then; `wait` as for `addMemories`. */
  updateMemory(
    userId: string,
    memoryId: string,
    change: MemoryChange & WaitParams,
    options?: RequestOptions,
  ): Promise<Memory> {
    const path = route`/v1/users/${userId}/memories/${memoryId}`;
    return this.#send({ method: "PATCH", path, body: change }, options);
  }

  /** Delete a memory; it is gone from search at once. */
  deleteMemory(userId: string, memoryId: string, options?: RequestOptions): Promise<void> {
    const path = route`/v1/users/${userId}/memories/${memoryId}`;
    return this.#send({ method: "DELETE", path, read: "none" }, options);
  }

  /** Poll until none of these memories is `pending`, or `waitMs` (60 s) pass: the memories
   * as they are then, in the order given. */
  async waitForMemories(userId: string, memoryIds: readonly string[], poll: PollOptions = {}): Promise<Memory[]> {
    const { waitMs = 60_000, intervalMs = 200, ...options } = poll;
    const deadline = Date.now() + waitMs;
    for (;;) {
      const found: Memory[] = [];
      for (const id of memoryIds) {
        found.push(await this.getMemory(userId, id, options));
      }
      if (found.every((memory) => memory.status !== "pending") || Date.now() >= deadline) {
        return found;
      }
      await pause(intervalMs, options.signal);
    }
  }

  // --- search and context ----------------------------------------------------------------

  /** The `k` best ready items of the user for a text `query` or a `vector`; what is not
   * given takes the API's defaults (docs/api.md, "Search"). */
  search(userId: string, request: SearchRequest, options?: RequestOptions): Promise<SearchResults> {
    return this.#send({ method: "POST", path: route`/v1/users/${userId}/search`, body: request }, options);
  }

  /** What the user's memory holds on `query` and the session's latest messages, packed
   * within `max_tokens` as text ready for a prompt (docs/api.md, "Context"). */
  context(userId: string, request: ContextRequest, options?: RequestOptions): Promise<Context> {
    return this.#send({ method: "POST", path: route`/v1/users/${userId}/context`, body: request }, options);
  }

  // --- documents -------------------------------------------------------------------------

  /** Add documents as one batch; each is split into chunks and embedded in the background;
   * `wait` answers once each is `ready` or `failed`, else `waitForBatch` waits. */
  addDocuments(
    userId: string,
    documents: readonly DocumentIn[],
    params: AddDocumentsParams = {},
    options?: RequestOptions,
  ): Promise<AcceptedDocuments> {
    const body: Schemas["AddDocuments"] = { documents: [...documents], ...params };
    return this.#send({ method: "POST", path: route`/v1/users/${userId}/documents`, body }, options);
  }

  /** Upload files (plain text, Markdown, HTML) as documents of one batch; the type comes
   * from the file name; `wait` as for `addDocuments`. */
  uploadFiles(
    userId: string,
    files: readonly Upload[],
    params: UploadParams = {},
    options?: RequestOptions,
  ): Promise<AcceptedDocuments> {
    const form = new FormData();
    for (const file of files) {
      if (file instanceof Blob) {
        form.append("files", file, file.name);
      } else {
        form.append("files", new Blob([file.content as BlobPart]), file.name);
      }
    }
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null) {
        form.append(name, String(value));
      }
    }
    return this.#send({ method: "POST", path: route`/v1/users/${userId}/documents/files`, form }, options);
  }

  /** Every document of the user, newest first. */
  listDocuments(userId: string, params: ListDocumentsParams = {}, options?: RequestOptions): Listing<Document> {
    return this.#cursorListing(route`/v1/users/${userId}/documents`, "documents", params, options);
  }

  /** One document; its status derives from its chunks. */
  getDocument(userId: string, documentId: string, options?: RequestOptions): Promise<Document> {
    return this.#send({ method: "GET", path: route`/v1/users/${userId}/documents/${documentId}` }, options);
  }

  /** The document's chunks, in order. */
  async listChunks(userId: string, documentId: string, options?: RequestOptions): Promise<Chunk[]> {
    const path = route`/v1/users/${userId}/documents/${documentId}/chunks`;
    return (await this.#send<Schemas["ChunkList"]>({ method: "GET", path }, options)).chunks;
  }

  /** Delete a document with its chunks and vectors. */
  deleteDocument(userId: string, documentId: string, options?: RequestOptions): Promise<void> {
    const path = route`/v1/users/${userId}/documents/${documentId}`;
    return this.#send({ method: "DELETE", path, read: "none" }, options);
  }

  /** A batch's documents counted by status. */
  getBatch(userId: string, batchId: string, options?: RequestOptions): Promise<Batch> {
    return this.#send({ method: "GET", path: route`/v1/users/${userId}/batches/${batchId}` }, options);
  }

  /** Poll until the batch is `completed` or `failed`, or `waitMs` (600 s) pass (then it is
   * still `in_progress`). */
  async waitForBatch(userId: string, batchId: string, poll: PollOptions = {}): Promise<Batch> {
    const { waitMs = 600_000, intervalMs = 500, ...options } = poll;
    const deadline = Date.now() + waitMs;
    for (;;) {
      const batch = await this.getBatch(userId, batchId, options);
      if (batch.status !== "in_progress" || Date.now() >= deadline) {
        return batch;
      }
      await pause(intervalMs, options.signal);
    }
  }

  // --- sessions and messages -------------------------------------------------------------

  /** Create a session (its id is the server's unless given); the same id with the same
   * title, metadata and start is a no-op, with others a `ConflictError`. */
  createSession(userId: string, session: SessionIn = {}, options?: RequestOptions): Promise<Session> {
    return this.#send({ method: "POST", path: route`/v1/users/${userId}/sessions`, body: session }, options);
  }

  /** Every session of the user, newest first. */
  listSessions(userId: string, params: ListSessionsParams = {}, options?: RequestOptions): Listing<Session> {
    return this.#cursorListing(route`/v1/users/${userId}/sessions`, "sessions", params, options);
  }

  /** One session, with its number of messages. */
  getSession(userId: string, sessionId: string, options?: RequestOptions): Promise<Session> {
    return this.#send({ method: "GET", path: route`/v1/users/${userId}/sessions/${sessionId}` }, options);
  }

  /** Delete the session and its messages, and its memories unless `keep_memories`. */
  deleteSession(
    userId: string,
    sessionId: string,
    params: DeleteSessionParams = {},
    options?: RequestOptions,
  ): Promise<void> {
    const path = route`/v1/users/${userId}/sessions/${sessionId}`;
    return this.#send({ method: "DELETE", path, query: params, read: "none" }, options);
  }

  /** Append messages in order; each is remembered as a memory of its own (`memory_id`);
   * `wait` answers once those are embedded. */
  async addMessages(
    userId: string,
    sessionId: string,
    messages: readonly MessageIn[],
    params: WaitParams = {},
    options?: RequestOptions,
  ): Promise<Message[]> {
    const path = route`/v1/users/${userId}/sessions/${sessionId}/messages`;
    const body: Schemas["AddMessages"] = { messages: [...messages], ...params };
    return (await this.#send<Schemas["MessageList"]>({ method: "POST", path, body }, options)).messages;
  }

  /** The session's messages in order, from the one after seq `after`, `limit` a page. */
  listMessages(
    userId: string,
    sessionId: string,
    params: ListMessagesParams = {},
    options?: RequestOptions,
  ): Listing<Message> {
    const path = route`/v1/users/${userId}/sessions/${sessionId}/messages`;
    const limit = params.limit ?? 100;
    const page = async (after: number): Promise<Page<Message>> => {
      const query = { after, limit };
      const { messages } = await this.#send<Schemas["MessageList"]>({ method: "GET", path, query }, options);
      const last = messages.at(-1);
      return { items: messages, next: messages.length === limit && last ? () => page(last.seq) : null };
    };
    return new Listing(() => page(params.after ?? 0));
  }

  // --- the user as a whole ---------------------------------------------------------------

  /** Every user id that has memories, documents, sessions or a key, in order of id, with
   * counts; `prefix` narrows them (admin). */
  listUsers(params: ListUsersParams = {}, options?: RequestOptions): Listing<UserSummary> {
    return this.#cursorListing("/v1/users", "users", params, options);
  }

  /** Erase everything of the user, vectors included; answers what was deleted. */
  eraseUser(userId: string, options?: RequestOptions): Promise<Erased> {
    return this.#send({ method: "DELETE", path: route`/v1/users/${userId}` }, options);
  }

  /** Everything of the user as NDJSON text, vectors included (read whole into memory). */
  exportUser(userId: string, options?: RequestOptions): Promise<string> {
    return this.#send({ method: "GET", path: route`/v1/users/${userId}/export`, read: "text" }, options);
  }

  /** Import an export (`exportUser`'s text) into this user; what the user already has stays
   * as it is, so importing twice changes nothing the second time. */
  importUser(userId: string, ndjson: string | Uint8Array | Blob, options?: RequestOptions): Promise<Imported> {
    const raw = { content: ndjson, contentType: NDJSON };
    return this.#send({ method: "POST", path: route`/v1/users/${userId}/import`, raw }, options);
  }

  // --- admin: keys, spaces, jobs, audit --------------------------------------------------

  /** A key that may act on `userId` only, or without one an admin key; the secret is in
   * `key`, shown this once (admin). */
  createKey(userId?: string, options?: RequestOptions): Promise<CreatedKey> {
    const body = userId === undefined ? {} : { user_id: userId };
    return this.#send({ method: "POST", path: "/v1/keys", body }, options);
  }

  /** Every key, newest first, never its secret (admin). */
  listKeys(params: ListKeysParams = {}, options?: RequestOptions): Listing<ApiKey> {
    return this.#cursorListing("/v1/keys", "keys", params, options);
  }

  /** Revoke a key; it stops working at once (admin). */
  revokeKey(keyId: string, options?: RequestOptions): Promise<void> {
    return this.#send({ method: "DELETE", path: route`/v1/keys/${keyId}`, read: "none" }, options);
  }

  /** The embedding spaces, with the caller's items in each by state. */
  listSpaces(options?: RequestOptions): Promise<SpaceInfo[]> {
    return this.#send({ method: "GET", path: "/v1/spaces" }, options);
  }

  /** One embedding space. */
  getSpace(name: string, options?: RequestOptions): Promise<SpaceInfo> {
    return this.#send({ method: "GET", path: route`/v1/spaces/${name}` }, options);
  }

  /** Embed every existing item into this space in the background (admin). */
  backfillSpace(name: string, options?: RequestOptions): Promise<SpaceInfo> {
    return this.#send({ method: "POST", path: route`/v1/spaces/${name}/backfill` }, options);
  }

  /** Drop a space's vectors and jobs, not its items (admin; not a default space). */
  dropSpace(name: string, options?: RequestOptions): Promise<DroppedSpace> {
    return this.#send({ method: "DELETE", path: route`/v1/spaces/${name}` }, options);
  }

  /** Items whose embedding failed for good, with the error (admin). */
  failedJobs(params: FailedJobsParams = {}, options?: RequestOptions): Listing<FailedJob> {
    return this.#cursorListing("/v1/jobs/failed", "jobs", params, options);
  }

  /** Embed a failed item again with fresh attempts (admin). */
  retryJob(itemId: string, options?: RequestOptions): Promise<RetriedJob> {
    return this.#send({ method: "POST", path: route`/v1/jobs/${itemId}/retry` }, options);
  }

  /** Admin actions, newest first (admin); each filter given narrows them. */
  auditLog(params: AuditLogParams = {}, options?: RequestOptions): Listing<AuditEntry> {
    return this.#cursorListing("/v1/audit", "entries", params, options);
  }

  // --- sending ---------------------------------------------------------------------------

  #send<T>(call: Call, options?: RequestOptions): Promise<T> {
    return this.#http.send<T>(call, options);
  }

  /** A listing answering `{[field]: [...], next_cursor}`, followed to its last page. */
  #cursorListing<T>(
    path: string,
    field: string,
    params: Record<string, string | number | boolean | Date | null | undefined>,
    options: RequestOptions | undefined,
  ): Listing<T> {
    const page = async (cursor: string | number | null): Promise<Page<T>> => {
      const query = cursor === null ? params : { ...params, cursor };
      const answer = await this.#send<Record<string, unknown>>({ method: "GET", path, query }, options);
      const next = answer.next_cursor as string | number | null | undefined;
      const items = answer[field] as T[];
      return { items, next: next === null || next === undefined ? null : () => page(next) };
    };
    return new Listing(() => page(null));
  }
}

/** A path whose parts are each escaped as one segment. */
function route(strings: TemplateStringsArray, ...parts: string[]): string {
  return strings.reduce((path, text, index) => path + encodeURIComponent(parts[index - 1] ?? "") + text);
}
