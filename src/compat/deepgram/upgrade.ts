/**
 * The upgrade side of the Deepgram dialect: detection, parameters, and the
 * native start the session is opened with.
 */
import { GatewayError } from '../../errors.js';
import type { ClientEvent } from '../../protocol/codec.js';
import type { StartMessage } from '../../protocol/messages.js';
import type { UpgradeRequest } from '../../transport/types.js';
import { DeepgramParamError, isDeepgram, parseDeepgramParams, type DeepgramParams } from './params.js';

export interface DeepgramUpgrade {
  readonly params: DeepgramParams;
  readonly start: ClientEvent;
}

/**
 * null: not the Deepgram dialect. A GatewayError (CAP_ERR_BAD_PARAMETER,
 * HTTP 400) names the parameter that is refused. Otherwise the parameters
 * and the native start: 16-bit PCM at the client's rate and channels (µ-law
 * and A-law are expanded at the edge), interim captions and acks always on
 * (the dialect uses them; the client sees Results, never acks).
 */
export function deepgramUpgrade(req: Pick<UpgradeRequest, 'query' | 'headers' | 'protocols'>): DeepgramUpgrade | GatewayError | null {
  if (!isDeepgram(req)) return null;
  let params: DeepgramParams;
  try {
    params = parseDeepgramParams(req.query);
  } catch (err) {
    if (err instanceof DeepgramParamError) return new GatewayError('CAP_ERR_BAD_PARAMETER', `Deepgram parameter ${err.param}: ${err.message}`);
    throw err;
  }
  const start: StartMessage = {
    type: 'start',
    sampleRate: params.sampleRate,
    channels: params.channels,
    encoding: 's16le',
    language: 'en',
    interim: true,
    ack: true,
  };
  return { params, start: { kind: 'control', message: start } };
}
