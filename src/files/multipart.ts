/**
 * A small multipart/form-data parser (RFC 7578) over a body already
 * buffered and bounded by the transport. It finds the delimiters with
 * Buffer.indexOf, reads each part's headers (Content-Disposition's `name`
 * and `filename`, Content-Type), and hands out views of the body: nothing
 * is copied. Anything malformed is a MultipartError, which the routes
 * answer with 400.
 */

export interface Part {
  readonly name: string;
  /** The `filename` parameter, when the part is a file. */
  readonly filename: string | null;
  readonly contentType: string | null;
  /** A view of the request body. */
  readonly data: Uint8Array;
}

export class MultipartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MultipartError';
  }
}

/** The boundary of a `multipart/form-data` Content-Type, or null when the type is another. */
export function boundaryOf(contentType: string | undefined): string | null {
  if (!contentType) return null;
  const [type, ...params] = splitParams(contentType);
  if (type!.toLowerCase() !== 'multipart/form-data') return null;
  for (const p of params) {
    const [k, v] = p;
    if (k === 'boundary' && v) {
      if (v.length > 70) throw new MultipartError('the multipart boundary is longer than 70 characters');
      return v;
    }
  }
  throw new MultipartError('multipart/form-data without a boundary');
}

/** `type; a=b; c="d"` → ['type', ['a','b'], ['c','d']]: parameter names lower-cased, quoted strings unquoted. */
function splitParams(header: string): [string, ...[string, string][]] {
  const semi = header.indexOf(';');
  const head = (semi < 0 ? header : header.slice(0, semi)).trim();
  const out: [string, ...[string, string][]] = [head];
  let i = semi < 0 ? header.length : semi + 1;
  while (i < header.length) {
    while (header[i] === ' ' || header[i] === '\t' || header[i] === ';') i++;
    const eq = header.indexOf('=', i);
    if (eq < 0) break;
    const key = header.slice(i, eq).trim().toLowerCase();
    i = eq + 1;
    let value = '';
    if (header[i] === '"') {
      i++;
      while (i < header.length && header[i] !== '"') {
        if (header[i] === '\\' && i + 1 < header.length) i++;
        value += header[i];
        i++;
      }
      i++; // closing quote
      const next = header.indexOf(';', i);
      i = next < 0 ? header.length : next + 1;
    } else {
      const next = header.indexOf(';', i);
      value = (next < 0 ? header.slice(i) : header.slice(i, next)).trim();
      i = next < 0 ? header.length : next + 1;
    }
    out.push([key, value]);
  }
  return out;
}

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
const MAX_HEADER_BYTES = 8 * 1024;

export interface MultipartLimits {
  /** Most parts accepted (default 64). */
  readonly maxParts?: number;
}

/** Every part of a multipart/form-data body, in order. */
export function parseMultipart(body: Uint8Array, boundary: string, limits: MultipartLimits = {}): Part[] {
  const maxParts = limits.maxParts ?? 64;
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const dash = Buffer.from(`--${boundary}`);
  // Every delimiter after the first is preceded by CRLF.
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  // The first delimiter may start the body or follow a preamble line.
  let pos: number;
  if (buf.subarray(0, dash.length).equals(dash)) pos = dash.length;
  else {
    const at = buf.indexOf(delimiter);
    if (at < 0) throw new MultipartError('the body has no multipart boundary');
    pos = at + delimiter.length;
  }
  const parts: Part[] = [];
  for (;;) {
    // After a delimiter: `--` ends the body; else optional whitespace, then CRLF.
    if (buf[pos] === 0x2d && buf[pos + 1] === 0x2d) return parts;
    while (buf[pos] === 0x20 || buf[pos] === 0x09) pos++;
    if (!buf.subarray(pos, pos + 2).equals(CRLF)) throw new MultipartError('malformed multipart delimiter line');
    pos += 2;
    const headEnd = buf.indexOf(HEADER_END, pos);
    if (headEnd < 0 || headEnd - pos > MAX_HEADER_BYTES) throw new MultipartError('a multipart part has no end of headers (or headers above 8 KiB)');
    const headers = parseHeaders(buf.toString('latin1', pos, headEnd));
    const start = headEnd + 4;
    const end = buf.indexOf(delimiter, start);
    if (end < 0) throw new MultipartError('the multipart body ends without its closing boundary');
    const disposition = headers.get('content-disposition');
    if (!disposition) throw new MultipartError('a multipart part has no Content-Disposition');
    const [kind, ...params] = splitParams(disposition);
    if (kind.toLowerCase() !== 'form-data') throw new MultipartError(`a multipart part's Content-Disposition is "${kind}", not form-data`);
    const name = params.find(([k]) => k === 'name')?.[1];
    if (name === undefined) throw new MultipartError('a multipart part has no name');
    const filename = params.find(([k]) => k === 'filename')?.[1] ?? null;
    if (parts.length >= maxParts) throw new MultipartError(`more than ${maxParts} multipart parts`);
    // Header values are bytes; names and file names are UTF-8 in practice (RFC 7578 §5.1).
    parts.push({
      name: Buffer.from(name, 'latin1').toString('utf8'),
      filename: filename === null ? null : Buffer.from(filename, 'latin1').toString('utf8'),
      contentType: headers.get('content-type') ?? null,
      data: body.subarray(start, end),
    });
    pos = end + delimiter.length;
  }
}

function parseHeaders(block: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of block.split('\r\n')) {
    if (!line) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MultipartError(`malformed multipart header line "${line.slice(0, 60)}"`);
    out.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return out;
}

/** A part's text (fields are UTF-8). */
export function fieldText(p: Part): string {
  return Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength).toString('utf8');
}
