/**
 * examples/chat-memory.ts run through the AI SDK's own `generateText`, with a scripted model
 * in place of an LLM (the SDK's MockLanguageModelV3): the SDK calls the tools, and the tools
 * call the running Engram.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import type { LanguageModelV3CallOptions, LanguageModelV3GenerateResult } from "@ai-sdk/provider";
import { MockLanguageModelV3 } from "ai/test";
import { chatTurn } from "../examples/chat-memory.js";
import { newUser } from "./support.js";

type Content = LanguageModelV3GenerateResult["content"];

/** A model that answers with each step's content in turn, and keeps the prompts it got. */
function scripted(steps: Content[]): { model: MockLanguageModelV3; prompts: LanguageModelV3CallOptions[] } {
  const prompts: LanguageModelV3CallOptions[] = [];
  const model = new MockLanguageModelV3({
    doGenerate: async (options) => {
      prompts.push(options);
      const content = steps[prompts.length - 1] ?? [];
      const calls = content.some((part) => part.type === "tool-call");
      return {
        content,
        finishReason: { unified: calls ? "tool-calls" : "stop", raw: undefined },
        usage: {
          inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
          outputTokens: { total: 1, text: 1, reasoning: 0 },
        },
        warnings: [],
      };
    },
  });
  return { model, prompts };
}

function toolCall(toolName: string, input: object): Content[number] {
  return { type: "tool-call", toolCallId: `call-${toolName}`, toolName, input: JSON.stringify(input) };
}

/** The JSON a tool answered, as the model read it in its next prompt. */
function toolResult(options: LanguageModelV3CallOptions): unknown {
  for (const message of options.prompt) {
    if (message.role === "tool") {
      const part = message.content[0];
      if (part?.type === "tool-result" && part.output.type === "json") {
        return part.output.value;
      }
    }
  }
  return undefined;
}

test("a chat remembers through its tools and recalls in a later conversation", async () => {
  const { userId, engram } = await newUser("ts-chat-app");
  await engram.createSession(userId, { id: "monday" });
  await engram.createSession(userId, { id: "friday" });

  const first = scripted([
    [toolCall("remember", { fact: "Bob is vegetarian.", importance: 0.9 })],
    [{ type: "text", text: "Noted: you are vegetarian." }],
  ]);
  const reply = await chatTurn(engram, first.model, { userId, sessionId: "monday", text: "I'm vegetarian." });
  assert.equal(reply, "Noted: you are vegetarian.");
  const stored = toolResult(first.prompts[1]!) as { stored: string; already_known: boolean };
  assert.equal(stored.already_known, false);
  await engram.waitForMemories(userId, [stored.stored]);

  const second = scripted([
    [toolCall("recall", { query: "what does Bob eat?" })],
    [{ type: "text", text: "A vegetarian place it is." }],
  ]);
  await chatTurn(engram, second.model, { userId, sessionId: "friday", text: "Book dinner for Friday." });
  // the context of the prompt held the memory already, and the tool found it too
  const system = second.prompts[0]!.prompt[0];
  assert.ok(system?.role === "system" && system.content.includes("Bob is vegetarian."), JSON.stringify(system));
  const recalled = toolResult(second.prompts[1]!) as { memory: string }[];
  assert.equal(recalled[0]?.memory, "Bob is vegetarian.");

  const turns = await engram.listMessages(userId, "friday").toArray();
  assert.deepEqual(
    turns.map((turn) => [turn.role, turn.content]),
    [
      ["user", "Book dinner for Friday."],
      ["assistant", "A vegetarian place it is."],
    ],
  );
});

test("docs/typescript.md shows the code of examples/chat-memory.ts", async () => {
  const read = (path: string) => readFile(new URL(path, import.meta.url), "utf8");
  const doc = await read("../../../../docs/typescript.md");
  const example = (await read("../../examples/chat-memory.ts")).split("\n");
  const shown = [...doc.matchAll(/```ts\n([\s\S]*?)```/g)]
    .map((block) => block[1]!)
    .filter((code) => /function (memoryTools|chatTurn)/.test(code));
  assert.equal(shown.length, 2);
  // each line shown is in the example, in the same order (the example may comment more)
  let at = 0;
  for (const line of shown.join("\n").split("\n")) {
    const found = example.indexOf(line, at);
    assert.ok(found >= 0, `docs/typescript.md shows a line examples/chat-memory.ts lacks: ${line}`);
    at = found + 1;
  }
});
