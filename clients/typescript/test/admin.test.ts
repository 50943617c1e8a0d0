/** Health, keys, spaces, jobs, audit, export and import, erasure: the admin's operations. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConflictError, NotFoundError, type Memory } from "@engram/client";
import { admin, newUser, newUserId, rejection } from "./support.js";

describe("health and status", () => {
  test("healthz, readyz, metrics and status answer", async () => {
    assert.deepEqual(await admin.healthz(), { status: "ok" });
    const ready = await admin.readyz();
    assert.equal(ready.ready, true, JSON.stringify(ready.checks));
    assert.match(await admin.metrics(), /^# (HELP|TYPE) engram_/m);
    const status = await admin.status({ top: 3 });
    assert.ok(status.spaces.some((space) => space.space === "minilm-384"));
    assert.ok(status.failures.length <= 3);
    assert.ok(admin.rateLimit === null || admin.rateLimit.limit > 0);
  });
});

describe("keys", () => {
  test("created for a user, listed without the secret, revoked", async () => {
    const userId = newUserId("ts-key");
    const created = await admin.createKey(userId);
    assert.match(created.key, /^egm_/);
    assert.equal(created.user_id, userId);

    let listed;
    for await (const key of admin.listKeys({ limit: 50 })) {
      if (key.id === created.id) {
        listed = key;
        break; // a listing read only as far as needed
      }
    }
    assert.equal(listed?.user_id, userId);
    assert.equal(listed?.revoked_at, null);
    assert.ok(!JSON.stringify(listed).includes(created.key));

    const adminKey = await admin.createKey();
    assert.equal(adminKey.user_id, null);
    await admin.revokeKey(adminKey.id);
    await admin.revokeKey(created.id);

    const since = new Date(Date.now() - 3_600_000);
    const entries = await admin.auditLog({ action: "key.create", user_id: userId, since }).toArray();
    assert.deepEqual(
      entries.map((entry) => [entry.action, entry.target]),
      [["key.create", created.id]],
    );
  });
});

describe("spaces and jobs", () => {
  test("spaces listed and read; an unknown one is a 404, a default one is not dropped", async () => {
    const spaces = await admin.listSpaces();
    const minilm = spaces.find((space) => space.name === "minilm-384");
    assert.equal(minilm?.dims, 384);
    assert.deepEqual(await admin.getSpace("minilm-384"), minilm);
    assert.ok((await rejection(admin.getSpace("no-such-space"))) instanceof NotFoundError);
    assert.ok((await rejection(admin.backfillSpace("no-such-space"))) instanceof NotFoundError);
    const dropped = await rejection(admin.dropSpace("minilm-384"));
    assert.ok(dropped instanceof ConflictError, String(dropped));
    assert.match(dropped.message, /default/);
  });

  test("failed jobs listed; retrying an item that did not fail is a 404", async () => {
    for await (const job of admin.failedJobs({ limit: 100 })) {
      assert.equal(typeof job.user_id, "string");
      assert.equal(typeof job.attempts, "number");
    }
    const { userId, engram } = await newUser("ts-job");
    const [memory] = await engram.addMemories(userId, ["Nothing failed here."], { wait: true });
    assert.ok((await rejection(admin.retryJob(memory!.id))) instanceof NotFoundError);
  });
});

describe("a user as a whole", () => {
  test("exported, imported into another user (twice: nothing the second time), erased", async () => {
    const { userId, engram } = await newUser("ts-export");
    await engram.addMemories(userId, ["Dana grows tomatoes.", "Dana's dog is Rex."], { wait: true });
    await engram.createSession(userId, { id: "s1" });
    await engram.addMessages(userId, "s1", [{ role: "user", content: "Hello from Dana." }], { wait: true });

    const exported = await engram.exportUser(userId);
    const lines = exported.trim().split("\n").map((line) => JSON.parse(line) as { type: string });
    assert.equal(lines[0]?.type, "header");
    assert.equal(lines.at(-1)?.type, "end");

    const target = newUserId("ts-import");
    const imported = await admin.importUser(target, exported);
    assert.deepEqual([imported.user_id, imported.from_user_id], [target, userId]);
    assert.deepEqual([imported.imported.memory, imported.imported.message, imported.imported.session], [3, 1, 1]);
    assert.equal(imported.queued, 0); // the vectors came along
    const again = await admin.importUser(target, new TextEncoder().encode(exported));
    assert.deepEqual([again.imported.memory, again.existing.memory], [0, 3]);

    const contents = (memories: Memory[]) => memories.map((memory) => memory.content).sort();
    assert.deepEqual(
      contents(await admin.listMemories(target).toArray()),
      contents(await engram.listMemories(userId).toArray()),
    );
    const found = await admin.search(target, { query: "What vegetables does Dana grow?", k: 1 });
    assert.equal(found.results[0]?.content, "Dana grows tomatoes.");

    const prefix = userId.slice(0, -4);
    const users = await admin.listUsers({ prefix, limit: 1 }).toArray();
    assert.deepEqual(users, [{ user_id: userId, memories: 3, documents: 0, sessions: 1, keys: 1 }]);

    const erased = await engram.eraseUser(userId);
    assert.deepEqual([erased.user_id, erased.memories], [userId, 3]);
    assert.deepEqual(await engram.listMemories(userId).toArray(), []);
    assert.deepEqual(await engram.listSessions(userId).toArray(), []);
  });
});
