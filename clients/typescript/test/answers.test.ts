/**
 * Answers the running Engram never gives, but a proxy in front of it may: a page that is not
 * the API's error body, a 200 that is not JSON. The `fetch` option stands in for the network.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ApiError,
  Engram,
  EngramError,
  ServerError,
  UnavailableError,
  UnexpectedAnswerError,
} from "@engram/client";

/** A client whose every call is answered with `response`; the requests are kept. */
function answering(response: () => Response): { engram: Engram; requests: Request[] } {
  const requests: Request[] = [];
  const fetch = async (input: string | URL | Request, init?: RequestInit) => {
    requests.push(new Request(input, init));
    return response();
  };
  return { engram: new Engram({ baseUrl: "http://engram.test/", apiKey: "egm_k", fetch }), requests };
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => assert.fail("the call succeeded"),
    (error: unknown) => error,
  );
}

test("a proxy's error page is an ApiError by its status, its text the message", async () => {
  const page = "<html><body>502 Bad Gateway</body></html>";
  const { engram, requests } = answering(() => new Response(page, { status: 502, statusText: "Bad Gateway" }));
  const error = await failure(engram.getMemory("al/ice", "m1"));
  assert.ok(error instanceof ServerError, String(error));
  assert.deepEqual([error.status, error.code, error.message, error.requestId], [502, "http_502", page, null]);
  assert.equal(requests[0]?.url, "http://engram.test/v1/users/al%2Fice/memories/m1");
  assert.equal(requests[0]?.headers.get("authorization"), "Bearer egm_k");
});

test("a 503 is an UnavailableError with its Retry-After in seconds; an HTTP date is left out", async () => {
  const body = JSON.stringify({ error: { code: "unavailable", message: "the database is unavailable" } });
  const headers = { "Retry-After": "5", "X-Request-ID": "abc" };
  const unavailable = await failure(answering(() => new Response(body, { status: 503, headers })).engram.listSpaces());
  assert.ok(unavailable instanceof UnavailableError, String(unavailable));
  assert.deepEqual([unavailable.retryAfter, unavailable.requestId], [5, "abc"]);

  const dated = { "Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT" };
  const { engram } = answering(() => new Response(body, { status: 418, headers: dated }));
  const teapot = await failure(engram.listSpaces());
  assert.ok(teapot instanceof ApiError && teapot.constructor === ApiError, String(teapot));
  assert.equal(teapot.retryAfter, null);
});

test("a 200 that is not JSON is an UnexpectedAnswerError", async () => {
  const { engram } = answering(() => new Response("<html>login</html>", { status: 200 }));
  const error = await failure(engram.listSpaces());
  assert.ok(error instanceof UnexpectedAnswerError, String(error));
  assert.match(error.message, /GET \/v1\/spaces: not JSON/);
});

test("path parts are escaped as one segment each; '.' and '..' are refused, unsent", async () => {
  const { engram, requests } = answering(() => new Response("{}", { status: 200 }));
  await engram.getSession("a/b?c#d", "é .x");
  assert.equal(new URL(requests[0]!.url).pathname, "/v1/users/a%2Fb%3Fc%23d/sessions/%C3%A9%20.x");
  for (const id of [".", ".."]) {
    const error = await failure(engram.getMemory(id, "m1"));
    assert.ok(error instanceof EngramError && !(error instanceof ApiError), String(error));
    assert.match(error.message, /cannot be sent as path parts/);
  }
  assert.equal(requests.length, 1);
});
