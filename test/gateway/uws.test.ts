import { gatewaySuite } from './suite.js';

gatewaySuite('uws');
