// Writes src/schema.ts, the types of the Engram HTTP API, from its OpenAPI document.
//
//   npm run generate                          # from $ENGRAM_URL/schema/openapi.json
//   npm run generate -- openapi.json          # from a file (or any URL)
//
// The tests generate from the running Engram the same way and compare with src/schema.ts.
import { writeFile } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import openapiTS, { astToString, COMMENT_HEADER } from "openapi-typescript";

export const SCHEMA_FILE = fileURLToPath(new URL("../src/schema.ts", import.meta.url));
const DEFAULT_URL = "http://127.0.0.1:8000";

/** The OpenAPI document's location: an argument (file or URL), else the running Engram's. */
export function documentLocation(argument, environ = process.env) {
  if (argument) {
    return /^https?:\/\//.test(argument) ? new URL(argument) : pathToFileURL(argument);
  }
  const base = (environ.ENGRAM_URL || DEFAULT_URL).replace(/\/+$/, "");
  return new URL(`${base}/schema/openapi.json`);
}

/** Reads the document: fetched over HTTP, or read from a file. */
export async function readDocument(location) {
  if (location.protocol === "file:") {
    const { readFile } = await import("node:fs/promises");
    return JSON.parse(await readFile(location, "utf8"));
  }
  const answer = await fetch(location);
  if (!answer.ok) {
    throw new Error(`GET ${location}: ${answer.status} ${answer.statusText}`);
  }
  return answer.json();
}

/** The text of src/schema.ts for an OpenAPI document (an object). */
export async function generate(document) {
  // alphabetize: the same document in another key order gives the same file
  const ast = await openapiTS(document, { alphabetize: true, defaultNonNullable: false, silent: true });
  return COMMENT_HEADER.replace(
    " */",
    " * Engram's OpenAPI document (/schema/openapi.json): regenerate with `npm run generate`.\n */",
  ) + astToString(ast);
}

async function main() {
  const location = documentLocation(process.argv[2]);
  const text = await generate(await readDocument(location));
  await writeFile(SCHEMA_FILE, text);
  console.log(`wrote ${SCHEMA_FILE} from ${location}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error) => {
    console.error(`npm run generate: ${error.message}`);
    process.exit(1);
  });
}
