// The page's calls to tusk: the token (when authentication is on) goes in the Authorization
// header; only EventSource, which cannot send headers, puts it in the URL.

export interface UiConfig {
  auth: boolean;
  token_cookie: string | null;
  direct: boolean;
  single_put_max: number;
}

export interface Task {
  status: string;
  progress?: number;
  error?: string;
}

export interface UploadDoc {
  upload_id: string;
  status: string;
  filename: string | null;
  size: number | null;
  content_type: string | null;
  created_at: string;
  reason?: { code: string; message: string; signature?: string };
  tasks: Record<string, Task>;
  outputs: {
    thumbnails: Array<{ width: number; format: string; url: string }>;
    hls?: { master_url: string };
    mp4_url?: string;
    metadata?: { kind?: string; mime?: string };
  };
}

export interface Listing {
  uploads: UploadDoc[];
  next_cursor: string | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let token: string | undefined;

export function setToken(value: string | undefined): void {
  token = value;
}

export function authHeaders(): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(path, { ...init, headers: { Accept: 'application/json', ...authHeaders(), ...(init.headers as Record<string, string> | undefined) } });
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(res.status, err?.code ?? 'http_error', err?.message ?? `${res.status} ${res.statusText}`);
  }
  return body as T;
}

/** An event stream of one upload's status documents; the token rides in the URL only here. */
export function events(id: string): EventSource {
  const url = `/api/uploads/${encodeURIComponent(id)}/events${token ? `?access_token=${encodeURIComponent(token)}` : ''}`;
  return new EventSource(url);
}
