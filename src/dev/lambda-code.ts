/**
 * Dev/test only: a CodeFetcher for LambdaProvider.restoreLatest against moto. moto's Code.Location
 * is not downloadable (an amazonaws.com URL of a bucket it does not have), and it names $LATEST's
 * code for every published version. This catalog answers by CodeSha256 instead, from zips it was
 * given (`add`) or saw go to Lambda through a FaultProxy (`observer`: CreateFunction and
 * UpdateFunctionCode with ZipFile).
 */
import { createHash } from 'node:crypto';
import type { CodeFetcher } from '../providers/aws-lambda';
import type { CallObserver } from './fault-proxy';

export class LambdaZipCatalog {
  /** base64 sha256 (Lambda's CodeSha256) -> zip */
  private readonly zips = new Map<string, Buffer>();
  /** CodeSha256 of every fetch, in order (tests: was the code downloaded?). */
  readonly fetched: string[] = [];

  /** Remember a zip; returns its CodeSha256. */
  add(zip: Buffer): string {
    const sha = createHash('sha256').update(zip).digest('base64');
    this.zips.set(sha, zip);
    return sha;
  }

  readonly observer: CallObserver = (call, body, status) => {
    if (status >= 300 || !call.path.startsWith('/2015-03-31/functions')) return;
    const path = call.path.split('?')[0];
    const create = call.method === 'POST' && /^\/2015-03-31\/functions\/?$/.test(path);
    const update = call.method === 'PUT' && /\/functions\/[^/]+\/code$/.test(path);
    if (!create && !update) return;
    try {
      const json = JSON.parse(body.toString('utf8')) as { ZipFile?: string; Code?: { ZipFile?: string } };
      const zip = update ? json.ZipFile : json.Code?.ZipFile;
      if (zip) this.add(Buffer.from(zip, 'base64'));
    } catch {
      // not JSON: nothing to remember
    }
  };

  readonly fetchCode: CodeFetcher = async (req) => {
    if (req.signal.aborted) throw req.signal.reason;
    this.fetched.push(req.codeSha256);
    const zip = this.zips.get(req.codeSha256);
    if (!zip) throw Object.assign(new Error('no zip with this CodeSha256 in the catalog'), { name: 'CodeDownloadFailed' });
    return zip;
  };
}
