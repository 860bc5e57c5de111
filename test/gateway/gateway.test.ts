// The gateway suite over both transports, in one process: they share the
// engine's reference results (suite.ts), which take longer to compute than
// either transport's cases.
import { gatewaySuite } from './suite.js';

gatewaySuite('uws');
gatewaySuite('ws');
