/**
 * Engram as the memory of a chat app built on the Vercel AI SDK (`ai`): the model gets
 * `remember` and `recall` tools, each turn's prompt starts from the user's context, and
 * the turns are stored as the session's messages. docs/typescript.md walks through it.
 */
import { generateText, stepCountIs, tool, type LanguageModel } from "ai";
import { z } from "zod";
import { Engram } from "@engram/client";

/** The memory tools of one user's chat: the model decides when to use them. */
export function memoryTools(engram: Engram, userId: string) {
  return {
    remember: tool({
      description:
        "Store a lasting fact about the user (a preference, a plan, a name, a date) " +
        "to use in later conversations. One self-contained sentence per fact.",
      inputSchema: z.object({
        fact: z.string().min(1).describe("the fact, e.g. 'Bob is vegetarian.'"),
        importance: z.number().min(0).max(1).optional().describe("0 trivial .. 1 essential"),
      }),
      execute: async ({ fact, importance }, { abortSignal }) => {
        const [memory] = await engram.addMemories(userId, [{ content: fact, importance }], {}, {
          signal: abortSignal,
        });
        return { stored: memory!.id, already_known: memory!.duplicate };
      },
    }),
    recall: tool({
      description: "Search what is remembered about the user, best matches first.",
      inputSchema: z.object({
        query: z.string().min(1).describe("what to look for, in the user's words"),
        k: z.number().int().min(1).max(20).default(5),
      }),
      execute: async ({ query, k }, { abortSignal }) => {
        const found = await engram.search(userId, { query, k, mode: "hybrid" }, { signal: abortSignal });
        return found.results.map((hit) => ({ memory: hit.content, when: hit.occurred_at }));
      },
    }),
  };
}

/** One turn of a chat: the reply to `text`, with what Engram holds on it in the prompt. */
export async function chatTurn(
  engram: Engram,
  model: LanguageModel,
  { userId, sessionId, text }: { userId: string; sessionId: string; text: string },
): Promise<string> {
  // what the memory holds on this message, and the session's latest turns, as prompt text
  const context = await engram.context(userId, { query: text, session_id: sessionId, max_tokens: 1000 });
  const { text: reply } = await generateText({
    model,
    system: `You are a helpful assistant with a long-term memory of the user.\n\n${context.text}`,
    prompt: text,
    tools: memoryTools(engram, userId),
    stopWhen: stepCountIs(5), // tool calls, then the reply
  });
  // the turns become the session's messages, each remembered for later searches
  await engram.addMessages(userId, sessionId, [
    { role: "user", content: text },
    { role: "assistant", content: reply },
  ]);
  return reply;
}
