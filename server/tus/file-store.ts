// Local-disk store for the embedded (no S3) mode: @tus/file-store, with two fixes.
import { FileStore } from '@tus/file-store';
import { ERRORS, type Upload } from '@tus/utils';
import { finishedUploadsNeverExpire } from './finished-uploads-never-expire.js';

export class TuskFileStore extends FileStore {
  override async getUpload(id: string): Promise<Upload> {
    return finishedUploadsNeverExpire(await super.getUpload(id));
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
