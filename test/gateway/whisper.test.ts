// The whole gateway suite with engine.kind "whisper" (over uWS; the
// transports are covered by gateway.test.ts).
import { gatewaySuite } from './suite.js';

gatewaySuite('uws', 'whisper');
