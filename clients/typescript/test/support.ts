/** What every test file shares: the running Engram under test, and fresh users with keys. */
import { randomUUID } from "node:crypto";
import { Engram } from "@engram/client";

const url = process.env.ENGRAM_URL;
const adminKey = process.env.ENGRAM_ADMIN_KEY;
if (!url || !adminKey) {
  throw new Error(
    "the tests run against a running Engram: set ENGRAM_URL (e.g. http://127.0.0.1:8000) " +
      "and ENGRAM_ADMIN_KEY (its admin key)",
  );
}

export const ENGRAM_URL: string = url;
export const ADMIN_KEY: string = adminKey;

/** A client with the admin key. */
export const admin = new Engram({ baseUrl: ENGRAM_URL, apiKey: ADMIN_KEY });

/** A user id no other test uses. */
export function newUserId(prefix = "ts"): string {
  return `${prefix}-${randomUUID().slice(0, 12)}`;
}

/** A fresh user and a client with a key that may act on that user only. */
export async function newUser(prefix = "ts"): Promise<{ userId: string; engram: Engram; keyId: string }> {
  const userId = newUserId(prefix);
  const created = await admin.createKey(userId);
  return { userId, keyId: created.id, engram: new Engram({ baseUrl: ENGRAM_URL, apiKey: created.key }) };
}

/** The error a promise rejects with (fails the test if it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the call to fail, and it succeeded");
}

/**
 * The URL of another Engram a few tests need (a small rate limit, an external space), from
 * `variable`: without it they are skipped, unless ENGRAM_TEST_NO_SKIP is set (as `make test`
 * does), when its absence is an error.
 */
export function otherEngram(variable: string): string | undefined {
  const url = process.env[variable];
  if (!url && process.env.ENGRAM_TEST_NO_SKIP) {
    throw new Error(`${variable} is not set, and ENGRAM_TEST_NO_SKIP asks for every test`);
  }
  return url || undefined;
}
