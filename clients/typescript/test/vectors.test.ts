/**
 * Vectors the client sends, on an Engram whose memory space is external: memories, patches,
 * messages, search and context carry them (ENGRAM_EXTERNAL_URL; skipped without one).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Engram, InvalidRequestError } from "@engram/client";
import { ADMIN_KEY, newUserId, otherEngram, rejection } from "./support.js";

const url = otherEngram("ENGRAM_EXTERNAL_URL");
const skip = url ? false : "set ENGRAM_EXTERNAL_URL to an Engram whose memory space is external";

describe("vectors of an external space", { skip }, async () => {
  const admin = new Engram({ baseUrl: url, apiKey: ADMIN_KEY });
  const userId = newUserId("ts-vec");
  const { key } = await admin.createKey(userId);
  const engram = new Engram({ baseUrl: url, apiKey: key });
  const space = (await engram.listSpaces()).find((listed) => listed.provider === "external")!;
  /** A unit vector along one axis of the space, leaning a little toward the next one. */
  const axis = (index: number) =>
    Array.from({ length: space.dims }, (_, i) => (i === index ? 1 : i === (index + 1) % space.dims ? 0.1 : 0));

  test("memories written with their vectors are ready at once and found by a vector", async () => {
    const added = await engram.addMemories(userId, [
      { content: "Gus repairs clocks.", vector: axis(0) },
      { content: "Gus sails on Sundays.", vector: axis(1) },
    ]);
    assert.deepEqual(
      added.map((memory) => [memory.status, memory.space]),
      [
        ["ready", space.name],
        ["ready", space.name],
      ],
    );
    // a search names the space: without one it covers documents too, in a space of 384 dims
    const found = await engram.search(userId, { vector: axis(1), space: space.name, k: 1 });
    assert.equal(found.results[0]?.content, "Gus sails on Sundays.");
    assert.ok(found.results[0]!.similarity > 0.99);
    const both = { query: "clocks", vector: axis(0), mode: "hybrid" as const, types: ["memory" as const], k: 1 };
    const hybrid = await engram.search(userId, both);
    assert.equal(hybrid.results[0]?.content, "Gus repairs clocks.");

    const change = { content: "Gus mends watches.", vector: axis(2) };
    const patched = await engram.updateMemory(userId, added[0]!.id, change);
    assert.equal(patched.status, "ready");
    const moved = await engram.search(userId, { vector: axis(2), types: ["memory"], k: 1 });
    assert.equal(moved.results[0]?.content, "Gus mends watches.");
  });

  test("messages carry their memories' vectors, and context takes the query's", async () => {
    await engram.createSession(userId, { id: "boat" });
    const message = { role: "user" as const, content: "The boat is called Wren.", vector: axis(3) };
    await engram.addMessages(userId, "boat", [message]);
    const context = await engram.context(userId, { query: "boat name", vector: axis(3), max_tokens: 200 });
    assert.match(context.text, /Wren/);
  });

  test("a vector of the wrong length, or none where one is needed, is a 422", async () => {
    const short = await rejection(engram.addMemories(userId, [{ content: "short", vector: [1, 0] }]));
    assert.ok(short instanceof InvalidRequestError, String(short));
    assert.match(short.message, /memories\[0\]: vector must have \d+ numbers/);
    const none = await rejection(engram.search(userId, { query: "clocks" }));
    assert.ok(none instanceof InvalidRequestError, String(none));
  });
});
