/** src/schema.ts is what the running Engram's OpenAPI document generates, to the byte. */
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { ENGRAM_URL } from "./support.js";

interface Generator {
  SCHEMA_FILE: string;
  documentLocation(argument: string | undefined, environ: Record<string, string | undefined>): URL;
  readDocument(location: URL): Promise<unknown>;
  generate(document: unknown): Promise<string>;
}

test("src/schema.ts is generated from the running Engram's OpenAPI document", async () => {
  const generator = (await import(new URL("../../scripts/generate.mjs", import.meta.url).href)) as Generator;
  const location = generator.documentLocation(undefined, { ENGRAM_URL });
  const fresh = await generator.generate(await generator.readDocument(location));
  const committed = await readFile(generator.SCHEMA_FILE, "utf8");
  if (fresh !== committed) {
    const lines = diffLines(committed, fresh);
    throw new Error(
      `src/schema.ts is stale against ${location}: run npm run generate in clients/typescript ` +
        "with an Engram of this checkout running (make run; ENGRAM_URL if not http://127.0.0.1:8000), " +
        `and commit src/schema.ts.\nFirst differences (- committed, + served):\n${lines.join("\n")}`,
    );
  }
});

/** The first lines that differ, enough to see what changed. */
function diffLines(before: string, after: string, most = 20): string[] {
  const old = new Set(before.split("\n"));
  const now = new Set(after.split("\n"));
  const removed = [...old].filter((line) => !now.has(line)).map((line) => `- ${line}`);
  const added = [...now].filter((line) => !old.has(line)).map((line) => `+ ${line}`);
  return [...removed, ...added].slice(0, most);
}
