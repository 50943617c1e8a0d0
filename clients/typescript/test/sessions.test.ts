/** Sessions and messages through the client, against the running Engram. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConflictError, NotFoundError } from "@engram/client";
import { newUser, rejection } from "./support.js";

describe("sessions", async () => {
  const { userId, engram } = await newUser("ts-chat");

  test("a conversation stored, listed and packed as the next prompt's context", async () => {
    const session = await engram.createSession(userId, { id: "trip", title: "Trip planning" });
    assert.deepEqual([session.id, session.title, session.message_count], ["trip", "Trip planning", 0]);
    // the same session again is a no-op; another title for it is a conflict
    assert.equal((await engram.createSession(userId, { id: "trip", title: "Trip planning" })).id, "trip");
    const conflict = await rejection(engram.createSession(userId, { id: "trip", title: "Other" }));
    assert.ok(conflict instanceof ConflictError, String(conflict));

    const turns = await engram.addMessages(
      userId,
      "trip",
      [
        { role: "user", content: "Book me a flight to Lisbon in April. I'm vegetarian.", name: "Bob" },
        { role: "assistant", content: "Noted: Lisbon in April, with a vegetarian meal." },
      ],
      { wait: true },
    );
    assert.deepEqual(
      turns.map((turn) => [turn.seq, turn.role, turn.name]),
      [
        [1, "user", "Bob"],
        [2, "assistant", null],
      ],
    );
    assert.ok(turns.every((turn) => turn.memory_id !== null));
    assert.equal((await engram.getSession(userId, "trip")).message_count, 2);

    const context = await engram.context(userId, { query: "What does Bob eat?", session_id: "trip" });
    assert.match(context.text, /Recent conversation \(last turn \d{4}-\d\d-\d\d \d\d:\d\d\):/);
    assert.match(context.text, /vegetarian/);
    assert.equal(context.messages.length, 2);
  });

  test("messages listed to the end, a page at a time, from a seq", async () => {
    const session = await engram.createSession(userId); // the server chooses the id
    const contents = Array.from({ length: 5 }, (_, i) => `turn ${i + 1}`);
    await engram.addMessages(
      userId,
      session.id,
      contents.map((content) => ({ role: "user" as const, content })),
    );
    const pages = [];
    for await (const page of engram.listMessages(userId, session.id, { limit: 2 }).pages()) {
      pages.push(page.map((message) => message.seq));
    }
    assert.deepEqual(pages, [[1, 2], [3, 4], [5]]);
    const later = await engram.listMessages(userId, session.id, { after: 3 }).toArray();
    assert.deepEqual(
      later.map((message) => message.content),
      ["turn 4", "turn 5"],
    );
    const sessions = await engram.listSessions(userId, { limit: 1 }).toArray();
    assert.deepEqual(
      sessions.map((listed) => listed.id),
      [session.id, "trip"],
    );
  });

  test("deleted with its memories, or keeping them", async () => {
    await engram.createSession(userId, { id: "kept" });
    const [turn] = await engram.addMessages(userId, "kept", [{ role: "user", content: "Keep this one." }]);
    await engram.deleteSession(userId, "kept", { keep_memories: true });
    assert.ok((await rejection(engram.getSession(userId, "kept"))) instanceof NotFoundError);
    assert.equal((await engram.getMemory(userId, turn!.memory_id!)).content, "Keep this one.");

    await engram.createSession(userId, { id: "gone" });
    const [lost] = await engram.addMessages(userId, "gone", [{ role: "user", content: "Forget this one." }]);
    await engram.deleteSession(userId, "gone");
    assert.ok((await rejection(engram.getMemory(userId, lost!.memory_id!))) instanceof NotFoundError);
    const unknown = await rejection(engram.addMessages(userId, "gone", [{ role: "user", content: "hello?" }]));
    assert.ok(unknown instanceof NotFoundError, String(unknown));
  });
});
