// Local-disk store for the embedded (no S3) mode: @tus/file-store, with two fixes.
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FileStore } from '@tus/file-store';
import { ERRORS, type Upload } from '@tus/utils';
import type { ConcatenatingStore } from './concatenating-store.js';
import { finishedUploadsNeverExpire } from './finished-uploads-never-expire.js';

export class TuskFileStore extends FileStore implements ConcatenatingStore {
  override async getUpload(id: string): Promise<Upload> {
    return finishedUploadsNeverExpire(await super.getUpload(id));
  }

  /** tus concatenation: the final file is the partials' files appended in order. */
  async concatenate(final: Upload, partials: Upload[]): Promise<Upload> {
    const target = path.join(this.directory, final.id);
    const building = `${target}.concat-tmp`;
    try {
      for (const [i, partial] of partials.entries()) {
        const source = partial.storage?.path ?? path.join(this.directory, partial.id);
        await pipeline(fs.createReadStream(source), fs.createWriteStream(building, { flags: i === 0 ? 'w' : 'a' }));
      }
      if (partials.length === 0) await fs.promises.writeFile(building, '');
      // Only a complete file gets the final name (and then its record): a crash leaves no half upload.
      await fs.promises.rename(building, target);
    } catch (err) {
      await fs.promises.rm(building, { force: true });
      throw err;
    }
    final.creation_date = new Date().toISOString();
    final.storage = { type: 'file', path: target };
    await this.configstore.set(final.id, final);
    final.offset = final.size ?? 0;
    return final;
  }

  /**
   * @tus/file-store compares the size with the offset saved at creation (always 0), so it
   * would delete FINISHED uploads once they are older than the expiry. We compare with the
   * bytes actually on disk and delete only unfinished, expired uploads.
   */
  override async deleteExpired(): Promise<number> {
    const expiry = this.getExpiration();
    if (expiry <= 0) return 0;
    if (!this.configstore.list) throw ERRORS.UNSUPPORTED_EXPIRATION_EXTENSION;
    const now = Date.now();
    let deleted = 0;
    for (const id of await this.configstore.list()) {
      const info = await this.configstore.get(id);
      if (!info?.creation_date || new Date(info.creation_date).getTime() + expiry > now) continue;
      let finished = false;
      try {
        const upload = await super.getUpload(id);
        finished = upload.size !== undefined && upload.offset === upload.size;
      } catch {
        // Record without data file: remove the record below.
      }
      if (finished) continue;
      try {
        await this.remove(id);
      } catch {
        await this.configstore.delete(id);
      }
      deleted++;
    }
    return deleted;
  }
}
