/* The API client: GET a JSON endpoint (api) or an SSE stream (stream); a failed call becomes an
   ApiError whose message says in plain words what went wrong (explain). Knows nothing about panels. */

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

export const isAbort = (err) => err && err.name === "AbortError";

export function explain(status, detail, retryAfter) {
  if (status === 422) return `the server rejected a setting — ${detail}`;
  if (status === 503) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again shortly.";
    return `the server is busy or shutting down (${detail}).${wait}`;
  }
  if (status === 429) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again shortly.";
    return `you have reached this server's rate limit (${detail}).${wait}`;
  }
  if (status === 504) return `the server took too long (${detail}). Try fewer points or fewer steps.`;
  if (status === 413) return `the request was too large (${detail}).`;
  return `the server answered with an error (HTTP ${status}): ${detail}`;
}

const UNREACHABLE = "could not reach the server (network error). Is it still running?";

async function get(path, signal, accept) {
  try {
    return await fetch(path, { signal, headers: { Accept: accept } });
  } catch (err) {
    if (isAbort(err)) throw err;
    throw new ApiError(UNREACHABLE, 0);
  }
}

async function jsonOrNull(response) {
  try {
    return await response.json();
  } catch (err) {
    if (isAbort(err)) throw err;
    return null;
  }
}

function failure(response, body) {
  const detail = body && typeof body.error === "string" && body.error ? body.error : `${response.status} ${response.statusText}`.trim();
  return new ApiError(explain(response.status, detail, response.headers.get("Retry-After")), response.status);
}

// GET a JSON endpoint; resolves to the parsed body.
export async function api(path, signal) {
  const response = await get(path, signal, "application/json");
  const body = await jsonOrNull(response);
  if (!response.ok) throw failure(response, body);
  if (body === null) throw new ApiError("the server sent a reply that is not valid JSON.", response.status);
  return body;
}

// GET an SSE endpoint and hand each event to onEvent(name, data) as it arrives; errors before
// the stream starts are JSON answers and become ApiErrors, like api()'s.
export async function stream(path, signal, onEvent) {
  const response = await get(path, signal, "text/event-stream");
  if (!response.ok) throw failure(response, await jsonOrNull(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (err) {
      if (isAbort(err)) throw err;
      throw new ApiError("the connection dropped while sampling. Is the server still running?", 0);
    }
    if (chunk.done) break;
    buffer += chunk.value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(name, JSON.parse(data));
    }
  }
}
