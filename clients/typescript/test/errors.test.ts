/** Typed errors, isolation between users, aborts and timeouts, against the running Engram. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { describe, test } from "node:test";
import {
  ApiError,
  AuthenticationError,
  ConflictError,
  Engram,
  EngramError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  RequestTimeoutError,
  TransportError,
} from "@engram/client";
import { ENGRAM_URL, admin, newUser, otherEngram, rejection } from "./support.js";

describe("typed errors", async () => {
  const { userId, engram } = await newUser("ts-err");

  test("401: a bad key, no key, a revoked key", async () => {
    for (const apiKey of ["egm_0000000000000000_not-a-real-secret", ""]) {
      const stranger = new Engram({ baseUrl: ENGRAM_URL, apiKey });
      const error = await rejection(stranger.listSpaces());
      assert.ok(error instanceof AuthenticationError, String(error));
      assert.ok(error instanceof ApiError && error instanceof EngramError && error instanceof Error);
      assert.deepEqual([error.status, error.code, error.name], [401, "unauthenticated", "AuthenticationError"]);
      assert.match(error.requestId ?? "", /^[0-9a-f]{32}$/);
    }
    const { engram: revoked, keyId } = await newUser("ts-revoked");
    await revoked.listSpaces();
    await admin.revokeKey(keyId);
    assert.ok((await rejection(revoked.listSpaces())) instanceof AuthenticationError);
  });

  test("403: a user's key on another user's routes, or on an admin route", async () => {
    const other = await newUser("ts-other");
    const error = await rejection(engram.listMemories(other.userId).toArray());
    assert.ok(error instanceof PermissionDeniedError, String(error));
    assert.deepEqual([error.status, error.code], [403, "forbidden"]);
    assert.ok((await rejection(engram.createKey(userId))) instanceof PermissionDeniedError);
  });

  test("404: an unknown id, with the request id the call sent", async () => {
    const error = await rejection(engram.getMemory(userId, randomUUID(), { requestId: "ts-test-404" }));
    assert.ok(error instanceof NotFoundError, String(error));
    assert.deepEqual([error.status, error.code, error.requestId], [404, "not_found", "ts-test-404"]);
  });

  test("409: a client-chosen id that names other content", async () => {
    const id = randomUUID();
    await engram.addMemories(userId, [{ id, content: "The first words." }]);
    const error = await rejection(engram.addMemories(userId, [{ id, content: "Other words." }]));
    assert.ok(error instanceof ConflictError, String(error));
    assert.deepEqual([error.status, error.code], [409, "conflict"]);
  });

  test("422: the API's message and details say what is wrong", async () => {
    const error = await rejection(engram.search(userId, { query: "coffee", k: 1000 }));
    assert.ok(error instanceof InvalidRequestError, String(error));
    assert.deepEqual([error.status, error.code], [422, "invalid_input"]);
    assert.match(error.message, /\bk\b.*100/);
    assert.match(String(error), /^InvalidRequestError: 422 invalid_input: /);

    const blank = await rejection(engram.addMemories(userId, ["ok", "bad \u0000 text"]));
    assert.ok(blank instanceof InvalidRequestError, String(blank));
    assert.match(blank.message, /memories\[1\]/);
  });

  test("429: past the key's rate limit, with when to try again", async (t) => {
    const limited = otherEngram("ENGRAM_LIMITED_URL");
    if (!limited) {
      t.skip("set ENGRAM_LIMITED_URL to an Engram with a small ENGRAM_RATE_LIMIT_PER_MINUTE");
      return;
    }
    const { key } = await admin.createKey(`ts-limit-${randomUUID().slice(0, 8)}`);
    const client = new Engram({ baseUrl: limited, apiKey: key });
    let error: unknown;
    for (let call = 0; call < 1000 && error === undefined; call++) {
      error = await client.listSpaces().then(() => undefined, (failure: unknown) => failure);
    }
    assert.ok(error instanceof RateLimitError, String(error));
    assert.deepEqual([error.status, error.code], [429, "rate_limited"]);
    assert.ok(error.retryAfter !== null && error.retryAfter >= 0 && error.retryAfter <= 60, String(error.retryAfter));
    assert.equal(client.rateLimit?.remaining, 0);
  });

  test("an API that cannot be reached is a TransportError", async () => {
    const port = await closedPort();
    const nowhere = new Engram({ baseUrl: `http://127.0.0.1:${port}`, apiKey: "egm_x" });
    const error = await rejection(nowhere.healthz());
    assert.ok(error instanceof TransportError, String(error));
    assert.match(error.message, /GET \/healthz: ECONNREFUSED/);
  });
});

describe("isolation between two users' keys", async () => {
  const alice = await newUser("ts-alice");
  const bob = await newUser("ts-bob");

  test("each key sees its own user's memories only", async () => {
    const [secret] = await alice.engram.addMemories(alice.userId, ["Alice's locker code is 4512."], { wait: true });
    await bob.engram.addMemories(bob.userId, ["Bob likes tea."], { wait: true });

    const found = await bob.engram.search(bob.userId, { query: "locker code", k: 10 });
    assert.deepEqual(
      found.results.map((hit) => hit.content),
      ["Bob likes tea."],
    );
    const theirs = await rejection(bob.engram.getMemory(bob.userId, secret!.id));
    assert.ok(theirs instanceof NotFoundError, String(theirs)); // another user's id: not found
    const calls = [
      () => bob.engram.getMemory(alice.userId, secret!.id),
      () => bob.engram.deleteMemory(alice.userId, secret!.id),
      () => bob.engram.search(alice.userId, { query: "locker code" }),
      () => bob.engram.exportUser(alice.userId),
    ];
    for (const call of calls) {
      assert.ok((await rejection(call())) instanceof PermissionDeniedError);
    }
    assert.equal((await admin.getMemory(alice.userId, secret!.id)).content, "Alice's locker code is 4512.");
  });
});

describe("aborts and timeouts", async () => {
  const { userId, engram } = await newUser("ts-abort");
  const many = Array.from({ length: 100 }, (_, i) => `Memory ${i} of a batch long to embed.`);

  test("an already aborted signal rejects with its reason, sending nothing", async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await rejection(engram.addMemories(userId, ["never sent"], {}, { signal: controller.signal }));
    assert.ok(error instanceof DOMException && error.name === "AbortError", String(error));
    assert.deepEqual(await engram.listMemories(userId).toArray(), []);
  });

  test("a call aborted while the API works rejects with the signal's reason", async () => {
    const reason = new Error("the user left");
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 50);
    const error = await rejection(engram.addMemories(userId, many, { wait: true }, { signal: controller.signal }));
    assert.equal(error, reason);
    assert.equal((await engram.healthz()).status, "ok");
  });

  test("a call past timeoutMs is a RequestTimeoutError", async () => {
    const error = await rejection(
      engram.addMemories(userId, many.map((text) => `${text} Again.`), { wait: true }, { timeoutMs: 50 }),
    );
    assert.ok(error instanceof RequestTimeoutError && error instanceof TransportError, String(error));
    assert.match(error.message, /no answer within 50 ms/);
  });

  test("a poll aborted between two looks rejects with the signal's reason", async () => {
    // a document of many chunks: still in progress at the first look, then a long pause
    const { batch_id } = await engram.addDocuments(userId, [{ content: [...many, ...many, ...many].join("\n\n") }]);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const polled = engram.waitForBatch(userId, batch_id, { intervalMs: 60_000, signal: controller.signal });
    const error = await rejection(polled);
    assert.ok(error instanceof DOMException && error.name === "AbortError", String(error));
  });
});

/** A local port nothing listens on (it did a moment ago). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
