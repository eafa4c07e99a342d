// "My uploads": the caller's uploads (GET /api/uploads, newest first, a page at a time), each an
// element `li[data-upload-id][data-status]` with its tasks' progress, its thumbnail (img), its
// video (HLS: native where the browser plays it, hls.js elsewhere, the MP4 as the fallback), the
// reason of a refusal in plain words and a download link. Uploads still moving are followed live
// over their event streams (SSE), which close once the upload reached its end.
import Hls from 'hls.js';
import { api, authHeaders, events, type Listing, type Task, type UploadDoc } from './api.js';

const TERMINAL = new Set(['ready', 'rejected', 'failed']);
const TASK_LABELS: Record<string, string> = { virus_scan: 'Virus scan', metadata: 'Checking the file', thumbnail: 'Thumbnails', transcode: 'Video versions' };
const STATUS_LABELS: Record<string, string> = {
  uploading: 'Uploading',
  uploaded: 'Uploaded, waiting to be processed',
  scanning: 'Scanning for viruses',
  processing: 'Processing',
  ready: 'Ready',
  rejected: 'Rejected',
  failed: 'Failed',
};
/** Plain words for the reasons tusk gives; its own message follows. */
const REASONS: Record<string, string> = {
  infected: 'A virus was found in this file, so it was removed.',
  type_not_allowed: 'This type of file is not accepted here.',
  too_large_to_scan: 'The file is too large to be checked for viruses.',
  empty: 'The file is empty.',
  too_long: 'The recording is longer than allowed.',
  too_much_work: 'The video would take too much work to convert.',
  media_bomb: 'The video claims far more than its size can hold.',
  pixel_limit: 'The picture has too many pixels.',
  truncated: 'The file is cut short or damaged.',
  scan_failed: 'The virus scan could not finish.',
  scanner_unavailable: 'Waiting for the virus scanner.',
};
/** Streams open at once: the server allows 32 per user, other tabs need some too. */
const MAX_STREAMS = 12;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function bytes(n: number | null): string {
  if (n === null) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

class UploadItem {
  readonly li: HTMLLIElement;
  private readonly statusText: HTMLSpanElement;
  private readonly reason: HTMLParagraphElement;
  private readonly tasks: HTMLDivElement;
  private readonly media: HTMLDivElement;
  private readonly actions: HTMLDivElement;
  private stream: EventSource | undefined;
  private img: HTMLImageElement | undefined;
  private video: HTMLVideoElement | undefined;
  private hls: Hls | undefined;
  doc: UploadDoc;

  constructor(doc: UploadDoc, private readonly onStreamEnd: () => void) {
    this.doc = doc;
    this.li = el('li', { class: 'upload', 'data-upload-id': doc.upload_id, 'data-status': doc.status });
    const head = el('div', { class: 'upload-head' });
    const title = el('h3', { class: 'name' }, doc.filename ?? doc.upload_id);
    title.id = `name-${doc.upload_id}`;
    this.li.setAttribute('aria-labelledby', title.id);
    this.statusText = el('span', { class: 'status', role: 'status' });
    head.append(title, this.statusText, el('span', { class: 'size' }, bytes(doc.size)));
    this.reason = el('p', { class: 'reason' });
    this.tasks = el('div', { class: 'tasks' });
    this.media = el('div', { class: 'media' });
    this.actions = el('div', { class: 'actions' });
    this.li.append(head, this.reason, this.tasks, this.media, this.actions);
    this.render();
  }

  get live(): boolean {
    return this.stream !== undefined;
  }

  follow(): void {
    if (this.stream || TERMINAL.has(this.doc.status)) return;
    const stream = events(this.doc.upload_id);
    this.stream = stream;
    stream.addEventListener('status', (e) => {
      this.update(JSON.parse((e as MessageEvent<string>).data) as UploadDoc);
    });
    stream.onerror = () => {
      // 4xx (e.g. a token that expired) closes the stream for good; the browser retries the rest.
      if (stream.readyState === EventSource.CLOSED) this.unfollow();
    };
  }

  unfollow(): void {
    if (!this.stream) return;
    this.stream.close();
    this.stream = undefined;
    this.onStreamEnd();
  }

  update(doc: UploadDoc): void {
    this.doc = doc;
    this.render();
    if (TERMINAL.has(doc.status)) this.unfollow();
  }

  destroy(): void {
    this.unfollow();
    this.hls?.destroy();
  }

  private render(): void {
    const d = this.doc;
    this.li.dataset.status = d.status;
    this.statusText.textContent = STATUS_LABELS[d.status] ?? d.status;
    this.statusText.className = `status status-${d.status}`;
    if (d.reason && (d.status === 'rejected' || d.status === 'failed' || d.reason.code === 'scanner_unavailable')) {
      const plain = REASONS[d.reason.code] ?? (d.status === 'rejected' ? 'This file was not accepted.' : 'Processing did not succeed.');
      const sig = d.reason.signature && !d.reason.message.includes(d.reason.signature) ? ` (${d.reason.signature})` : '';
      this.reason.textContent = `${plain} ${d.reason.message}${sig}`;
    } else {
      this.reason.textContent = '';
    }
    this.renderTasks(d.tasks);
    this.renderMedia();
    this.renderActions();
  }

  private renderTasks(tasks: Record<string, Task>): void {
    this.tasks.replaceChildren();
    if (TERMINAL.has(this.doc.status) || this.doc.status === 'uploading') return;
    for (const [name, task] of Object.entries(tasks)) {
      if (task.status === 'skipped') continue;
      const id = `task-${this.doc.upload_id}-${name}`;
      const row = el('div', { class: `task task-${task.status}` });
      const label = el('label', { for: id }, `${TASK_LABELS[name] ?? name}: ${task.status}${task.error ? ` (${task.error})` : ''}`);
      const bar = el('progress', { id, max: '100' });
      if (task.status === 'done') bar.value = 100;
      else if (typeof task.progress === 'number') bar.value = task.progress;
      else if (task.status !== 'running') bar.value = 0; // pending: empty; running without a figure: indeterminate
      row.append(label, bar);
      this.tasks.append(row);
    }
  }

  private renderMedia(): void {
    const { outputs, filename } = this.doc;
    // The first URL of a thumbnail is kept: a newer one (signed again) would only reload it.
    const thumb = outputs.thumbnails.find((t) => t.width >= 320) ?? outputs.thumbnails[outputs.thumbnails.length - 1];
    if (thumb && !this.img) {
      this.img = el('img', { alt: `Preview of ${filename ?? 'the upload'}`, loading: 'lazy', decoding: 'async' });
      this.img.src = thumb.url;
      this.media.prepend(this.img);
    }
    if (this.doc.status === 'ready' && (outputs.hls || outputs.mp4_url) && !this.video) {
      const video = el('video', { controls: '', playsinline: '', preload: 'metadata', 'aria-label': `Video: ${filename ?? 'the upload'}` });
      video.muted = true;
      if (this.img) video.poster = this.img.src;
      this.video = video;
      this.media.append(video);
      this.attachVideo(video, outputs.hls?.master_url, outputs.mp4_url);
    }
  }

  private attachVideo(video: HTMLVideoElement, hlsUrl: string | undefined, mp4Url: string | undefined): void {
    const fallback = () => {
      this.hls?.destroy();
      this.hls = undefined;
      if (mp4Url && video.src !== mp4Url) video.src = mp4Url;
    };
    if (!hlsUrl) return fallback();
    if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.addEventListener('error', fallback, { once: true });
      video.src = hlsUrl;
    } else if (Hls.isSupported()) {
      const hls = new Hls({ enableWorker: false });
      this.hls = hls;
      hls.on(Hls.Events.ERROR, (_e, data) => {
        if (data.fatal) fallback();
      });
      hls.loadSource(hlsUrl);
      hls.attachMedia(video);
    } else {
      fallback();
    }
    video.dataset.source = this.hls ? 'hls.js' : video.src === hlsUrl ? 'hls' : 'mp4';
  }

  private renderActions(): void {
    this.actions.replaceChildren();
    const d = this.doc;
    if (d.status !== 'ready') return;
    const a = el('a', { href: `/files/${d.upload_id}`, class: 'download', download: d.filename ?? '' }, 'Download');
    a.setAttribute('aria-label', `Download ${d.filename ?? 'the file'}`);
    a.addEventListener('click', (e) => {
      const headers = authHeaders();
      if (!headers.Authorization) return; // no token: the link works as it is
      // A link cannot send the Authorization header: fetch it, then save it.
      e.preventDefault();
      void fetch(a.href, { headers: { ...headers, 'Tus-Resumable': '1.0.0' } })
        .then((res) => (res.ok ? res.blob() : Promise.reject(new Error(String(res.status)))))
        .then((blob) => {
          const url = URL.createObjectURL(blob);
          const tmp = el('a', { href: url, download: d.filename ?? d.upload_id });
          document.body.append(tmp);
          tmp.click();
          tmp.remove();
          setTimeout(() => URL.revokeObjectURL(url), 60_000);
        })
        .catch(() => (this.reason.textContent = 'The download failed; try again.'));
    });
    this.actions.append(a);
  }
}

export class UploadList {
  private readonly items = new Map<string, UploadItem>();
  private cursor: string | null = null;
  private filter = '';
  private refreshing: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly ul: HTMLUListElement,
    private readonly more: HTMLButtonElement,
    private readonly message: HTMLElement,
  ) {
    more.addEventListener('click', () => void this.loadMore());
  }

  setFilter(statuses: string): void {
    this.filter = statuses;
    this.clear();
    void this.refresh();
  }

  clear(): void {
    for (const item of this.items.values()) item.destroy();
    this.items.clear();
    this.ul.replaceChildren();
    this.cursor = null;
  }

  private query(cursor?: string | null): string {
    const q = new URLSearchParams({ limit: '20' });
    if (this.filter) q.set('status', this.filter);
    if (cursor) q.set('cursor', cursor);
    return `/api/uploads?${q}`;
  }

  /** The first page again: new uploads go on top, known ones are updated in place. */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      try {
        do {
          this.again = false;
          const page = await api<Listing>(this.query());
          this.merge(page.uploads, 'top');
          if (this.items.size <= page.uploads.length) this.cursor = page.next_cursor;
          this.message.textContent = this.items.size ? '' : 'No uploads yet.';
        } while (this.again);
      } catch (err) {
        this.message.textContent = `Could not load your uploads: ${(err as Error).message}`;
      } finally {
        this.refreshing = undefined;
        this.more.hidden = !this.cursor;
      }
    })();
    return this.refreshing;
  }

  private async loadMore(): Promise<void> {
    if (!this.cursor) return;
    try {
      const page = await api<Listing>(this.query(this.cursor));
      this.merge(page.uploads, 'bottom');
      this.cursor = page.next_cursor;
    } catch (err) {
      this.message.textContent = `Could not load more: ${(err as Error).message}`;
    }
    this.more.hidden = !this.cursor;
  }

  private merge(docs: UploadDoc[], where: 'top' | 'bottom'): void {
    const fresh: HTMLLIElement[] = [];
    for (const doc of docs) {
      const known = this.items.get(doc.upload_id);
      if (known) {
        known.update(doc);
        continue;
      }
      const item = new UploadItem(doc, () => this.followSome());
      this.items.set(doc.upload_id, item);
      fresh.push(item.li);
    }
    if (where === 'top') this.ul.prepend(...fresh);
    else this.ul.append(...fresh);
    this.followSome();
  }

  /** Follows the newest uploads still moving, up to MAX_STREAMS at once. */
  private followSome(): void {
    let open = [...this.items.values()].filter((i) => i.live).length;
    for (const item of this.items.values()) {
      if (open >= MAX_STREAMS) break;
      if (!item.live && !TERMINAL.has(item.doc.status)) {
        item.follow();
        if (item.live) open++;
      }
    }
  }
}
