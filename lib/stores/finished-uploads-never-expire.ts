// tus expiration applies to unfinished uploads only ("Upload-Expires ... the time after which
// the unfinished upload expires"), but @tus/server's HEAD and PATCH handlers answer 410 for
// any upload whose creation_date + expiry has passed, finished or not. Our stores return a
// finished upload without creation_date, which those handlers read as "does not expire".
import { Upload } from '@tus/utils';

export function finishedUploadsNeverExpire(upload: Upload): Upload {
  if (upload.size === undefined || upload.offset !== upload.size) return upload;
  return new Upload({ ...upload, creation_date: undefined, metadata: upload.metadata, storage: upload.storage });
}
