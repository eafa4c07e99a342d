// The upload page: Uppy's Dashboard (tus through tusk, or straight to storage through tusk's
// Companion-compatible /s3/* routes), surviving reloads (Golden Retriever), and "My uploads".
import Uppy, { type Body, type Meta, type UppyFile } from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import Tus from '@uppy/tus';
import AwsS3 from '@uppy/aws-s3';
import GoldenRetriever from '@uppy/golden-retriever';
import '@uppy/core/css/style.min.css';
import '@uppy/dashboard/css/style.min.css';
import './style.css';
import { api, ApiError, authHeaders, setToken, type UiConfig } from './api.js';
import { findToken, forget, remember } from './token.js';
import { UploadList } from './uploads.js';

type Mode = 'tus' | 's3';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const MODE_KEY = 'tusk.mode';

async function main(): Promise<void> {
  const config = await api<UiConfig>('/ui/config.json');
  if (config.auth) {
    const token = findToken(config.token_cookie);
    if (!token || !(await tokenWorks(token))) return askForToken(config, token !== undefined);
    setToken(token);
    $('sign-out').hidden = false;
    $('sign-out').addEventListener('click', () => {
      forget();
      location.reload();
    });
  }
  start(config);
}

async function tokenWorks(token: string): Promise<boolean> {
  setToken(token);
  try {
    await api('/api/uploads?limit=1');
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return false;
    throw err;
  } finally {
    setToken(undefined);
  }
}

function askForToken(config: UiConfig, rejected: boolean): void {
  $('signin').hidden = false;
  const error = $('token-error');
  if (rejected) error.textContent = 'That token was not accepted (expired or invalid). Paste a new one.';
  const input = $<HTMLInputElement>('token-input');
  input.focus();
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = input.value.trim();
    void tokenWorks(token).then((ok) => {
      if (!ok) {
        error.textContent = 'That token was not accepted (expired or invalid).';
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      remember(token);
      setToken(token);
      $('signin').hidden = true;
      $('sign-out').hidden = false;
      start(config);
    });
  });
}

function start(config: UiConfig): void {
  $('upload').hidden = false;
  $('list').hidden = false;
  const list = new UploadList($<HTMLUListElement>('uploads'), $<HTMLButtonElement>('more'), $('list-message'));
  $<HTMLSelectElement>('status-filter').addEventListener('change', (e) => list.setFilter((e.target as HTMLSelectElement).value));
  void list.refresh();

  const uppy = new Uppy({ autoProceed: true, id: 'tusk' });
  uppy.use(Dashboard, {
    inline: true,
    target: '#dashboard',
    width: '100%',
    height: 300,
    proudlyDisplayPoweredByUppy: false,
    hideUploadButton: true,
    note: 'Uploads start as soon as files are chosen; they survive a reload of this page.',
  });
  uppy.use(GoldenRetriever);
  // A restored upload (after a reload) goes on by itself: nothing to confirm.
  uppy.on('restored', () => uppy.emit('restore-confirmed'));

  // tusk needs each file's size for a direct upload (quota, signed Content-Length).
  uppy.on('file-added', (file) => uppy.setFileMeta(file.id, { size: file.size ?? undefined }));

  let refreshTimer: ReturnType<typeof setTimeout> | undefined;
  const refreshSoon = () => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => void list.refresh(), 300);
  };
  const announced = new Set<string>();
  uppy.on('upload-progress', (file) => {
    // The upload exists on the server once bytes move: show it in the list.
    if (file && !announced.has(file.id)) {
      announced.add(file.id);
      refreshSoon();
    }
  });
  uppy.on('upload-success', (file) => {
    const id = file?.meta.tuskUploadId as string | undefined;
    // A single PUT to storage has no completion call in Uppy: tell tusk the bytes are there.
    if (id) void api(`/api/uploads/${id}/complete`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }).catch(() => {}).finally(refreshSoon);
    else refreshSoon();
  });
  uppy.on('upload-error', refreshSoon);

  const modeInputs = [...document.querySelectorAll<HTMLInputElement>('input[name="mode"]')];
  const s3Input = modeInputs.find((i) => i.value === 's3');
  if (s3Input && !config.direct) {
    s3Input.disabled = true;
    s3Input.closest('label')?.append(' (not available: this server stores files on its own disk)');
  }
  const wanted = (new URLSearchParams(location.search).get('mode') ?? localStorage.getItem(MODE_KEY)) as Mode | null;
  let mode: Mode = wanted === 's3' && config.direct ? 's3' : 'tus';
  const install = (m: Mode) => {
    for (const plugin of [uppy.getPlugin('Tus'), uppy.getPlugin('AwsS3Multipart')]) if (plugin) uppy.removePlugin(plugin);
    if (m === 'tus') {
      uppy.use(Tus, {
        endpoint: '/files/',
        chunkSize: 5 * 1024 * 1024,
        retryDelays: [0, 1000, 3000, 5000, 10000],
        headers: () => authHeaders(),
        removeFingerprintOnSuccess: true,
        allowedMetaFields: ['name', 'type'],
      });
    } else {
      uppy.use(AwsS3, {
        endpoint: location.origin,
        headers: authHeaders(),
        // Larger files go to storage as an S3 multipart upload (pausable, resumable); smaller ones in one PUT.
        shouldUseMultipart: (file: UppyFile<Meta, Body>) => (file.size ?? 0) > config.single_put_max,
        allowedMetaFields: ['name', 'type', 'size'],
        // tusk's /s3/params, with the upload id kept so that the upload can be completed.
        getUploadParameters: async (file: UppyFile<Meta, Body>, opts?: { signal?: AbortSignal }) => {
          const q = new URLSearchParams({ filename: file.name ?? 'file', type: file.type || 'application/octet-stream', size: String(file.size ?? 0) });
          const p = await api<{ url: string; headers: Record<string, string>; upload_id: string }>(`/s3/params?${q}`, { signal: opts?.signal });
          uppy.setFileMeta(file.id, { tuskUploadId: p.upload_id });
          return { method: 'PUT' as const, url: p.url, fields: {}, headers: p.headers };
        },
      });
    }
    mode = m;
    for (const i of modeInputs) i.checked = i.value === m;
    document.body.dataset.mode = m;
  };
  install(mode);
  for (const input of modeInputs) {
    input.addEventListener('change', () => {
      if (!input.checked) return;
      if (Object.keys(uppy.getState().currentUploads).length > 0) {
        // The plugin of an upload in progress cannot change under it.
        for (const i of modeInputs) i.checked = i.value === mode;
        $('list-message').textContent = 'Wait until the current uploads finish to change how files are sent.';
        return;
      }
      localStorage.setItem(MODE_KEY, input.value);
      install(input.value as Mode);
    });
  }

  const picker = $<HTMLInputElement>('file-input');
  picker.addEventListener('change', () => {
    const files = [...(picker.files ?? [])];
    picker.value = '';
    for (const f of files) {
      try {
        uppy.addFile({ name: f.name, type: f.type, data: f, source: 'file input' });
      } catch (err) {
        $('list-message').textContent = (err as Error).message;
      }
    }
  });
}

main().catch((err: unknown) => {
  const message = document.createElement('p');
  message.className = 'error';
  message.setAttribute('role', 'alert');
  message.textContent = `The page could not start: ${(err as Error).message}`;
  document.querySelector('main')?.prepend(message);
});
