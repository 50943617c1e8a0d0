/**
 * The API's types by name, taken from the generated `schema.ts` (the OpenAPI document): an
 * answer's type is what the API documents, and a field the API adds appears here once the
 * schema is generated again.
 */
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];

/** The query parameters a route takes. */
type Query<Path extends keyof paths, Method extends keyof paths[Path]> = NonNullable<
  paths[Path][Method] extends { parameters: { query?: infer Q } } ? Q : never
>;

// --- what the API answers -------------------------------------------------------------
export type AcceptedDocuments = Schemas["AcceptedDocuments"];
export type AddedMemory = Schemas["AddedMemory"];
export type ApiKey = Schemas["ApiKey"];
export type AuditEntry = Schemas["AuditEntry"];
export type Batch = Schemas["Batch"];
export type BatchCounts = Schemas["BatchCounts"];
export type Chunk = Schemas["ChunkOut"];
export type Context = Schemas["Context"];
export type ContextMemory = Schemas["ContextMemory"];
export type CreatedKey = Schemas["CreatedKey"];
export type Document = Schemas["Document"];
export type DroppedSpace = Schemas["DroppedSpace"];
export type Erased = Schemas["Erased"];
export type FailedJob = Schemas["FailedJob"];
export type FailureReason = Schemas["FailureReason"];
export type Fill = Schemas["Fill"];
export type Imported = Schemas["Imported"];
export type LeftOut = Schemas["LeftOut"];
export type Memory = Schemas["Memory"];
export type Message = Schemas["Message"];
export type Passage = Schemas["Passage"];
export type QueueDepth = Schemas["QueueDepth"];
export type Readiness = Schemas["Readiness"];
export type RetriedJob = Schemas["RetriedJob"];
export type SearchHit = Schemas["SearchHit"];
export type SearchResults = Schemas["SearchResults"];
export type ServiceStatus = Schemas["ServiceStatus"];
export type Session = Schemas["Session"];
export type SpaceCounts = Schemas["SpaceCounts"];
export type SpaceInfo = Schemas["SpaceInfo"];
export type SpaceStatus = Schemas["SpaceStatus"];
export type Turn = Schemas["Turn"];
export type UserSummary = Schemas["UserSummary"];
/** `/healthz`: `{"status": "ok"}` while the process serves. */
export type Health = Record<string, string>;
/** The state of an item in its space. */
export type Status = Memory["status"];
/** What a search finds: memories, chunks of documents. */
export type ItemType = SearchHit["type"];

// --- what the client sends ------------------------------------------------------------
export type MemoryIn = Schemas["MemoryIn"];
export type MemoryChange = Omit<Schemas["MemoryChange"], "wait">;
export type DocumentIn = Schemas["DocumentIn"];
export type MessageIn = Schemas["MessageIn"];
export type SessionIn = Schemas["SessionIn"];
export type SearchRequest = Schemas["SearchIn"];
export type ContextRequest = Schemas["ContextIn"];
export type Fusion = Schemas["Fusion"];
export type Weights = Schemas["WeightsIn"];

/** `wait`: answer once what was written is embedded (or failed, or the server's wait ran out). */
export type WaitParams = { wait?: boolean };
export type AddMemoriesParams = Omit<Schemas["AddMemories"], "memories">;
export type AddDocumentsParams = Omit<Schemas["AddDocuments"], "documents">;
export type UploadParams = Omit<Schemas["FilesIn"], "files">;

// the listings' filters; `limit` is the size of each page fetched
export type ListMemoriesParams = Omit<Query<"/v1/users/{user_id}/memories", "get">, "cursor" | "filter"> & {
  /** Keeps the memories whose metadata matches, in search's filter language. */
  filter?: Record<string, unknown> | null;
};
export type ListDocumentsParams = Omit<Query<"/v1/users/{user_id}/documents", "get">, "cursor">;
export type ListSessionsParams = Omit<Query<"/v1/users/{user_id}/sessions", "get">, "cursor">;
export type ListMessagesParams = Query<"/v1/users/{user_id}/sessions/{session_id}/messages", "get">;
export type DeleteSessionParams = Query<"/v1/users/{user_id}/sessions/{session_id}", "delete">;
export type ListUsersParams = Omit<Query<"/v1/users", "get">, "cursor">;
export type ListKeysParams = Omit<Query<"/v1/keys", "get">, "cursor">;
export type FailedJobsParams = Omit<Query<"/v1/jobs/failed", "get">, "cursor">;
export type AuditLogParams = Omit<Query<"/v1/audit", "get">, "cursor" | "since" | "until"> & {
  /** Entries at or after this time (a `Date`, or RFC 3339 with an offset). */
  since?: Date | string | null;
  /** Entries before this time. */
  until?: Date | string | null;
};
export type StatusParams = Query<"/v1/status", "get">;

/** A file to upload: a `File` (its name gives the type), or a name and its content. */
export type Upload = File | { name: string; content: string | Uint8Array | Blob };

/** What the latest answer said of the key's rate limit (`RateLimit-*` headers). */
export interface RateLimit {
  /** The key's units a minute. */
  limit: number;
  /** The units left. */
  remaining: number;
  /** Seconds until the window ends. */
  reset: number;
}
