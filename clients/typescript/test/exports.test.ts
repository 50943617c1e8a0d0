/** The package's public surface, pinned: what it exports, and that it depends on nothing. */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import * as client from "@engram/client";

test("the package exports exactly its public names", () => {
  assert.deepEqual(Object.keys(client).sort(), [
    "ApiError",
    "AuthenticationError",
    "ConflictError",
    "Engram",
    "EngramError",
    "InvalidRequestError",
    "Listing",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "TransportError",
    "UnavailableError",
    "UnexpectedAnswerError",
  ]);
});

test("the package has no runtime dependency: fetch is all it needs", async () => {
  const manifest = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as Record<
    string,
    unknown
  >;
  assert.equal(manifest.dependencies, undefined);
  assert.equal(manifest.peerDependencies, undefined);
  assert.equal(manifest.type, "module");
});
