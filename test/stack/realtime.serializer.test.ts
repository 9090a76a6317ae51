import { describe, expect, it } from 'vitest';
import {
  decodeFrame,
  encodeMessage,
  encodeUserBroadcast,
  MalformedFrameError,
  negotiateSerializer,
} from '../../src/testing/realtime/serializer';

describe('serializer negotiation', () => {
  it('matches ~> 1.0.0 and ~> 2.0.0, defaults to 1.0.0, and refuses anything else', () => {
    expect(negotiateSerializer(undefined)).toBe('1.0.0');
    expect(negotiateSerializer(null)).toBe('1.0.0');
    expect(negotiateSerializer('1.0.0')).toBe('1.0.0');
    expect(negotiateSerializer('1.0.7')).toBe('1.0.0');
    expect(negotiateSerializer('2.0.0')).toBe('2.0.0');
    expect(negotiateSerializer('2.1.0')).toBeUndefined();
    expect(negotiateSerializer('3.0.0')).toBeUndefined();
    expect(negotiateSerializer('2.0')).toBeUndefined();
    expect(negotiateSerializer('2.0.0-rc.1')).toBeUndefined();
  });
});

describe('serializer 2.0.0 frames', () => {
  it('encodes text messages as five-element arrays', () => {
    const text = encodeMessage('2.0.0', {
      joinRef: '9',
      ref: null,
      topic: 'realtime:room1',
      event: 'presence_state',
      payload: {},
    });
    expect(JSON.parse(text)).toEqual(['9', null, 'realtime:room1', 'presence_state', {}]);
  });

  it('decodes the probe kind-3 frame byte for byte', () => {
    const body = Buffer.from('{"n":1,"s":"héllo"}');
    const frame = Buffer.concat([
      Buffer.from([0x03, 0x01, 0x02, 0x0e, 0x04, 0x00, 0x01]),
      Buffer.from('9'),
      Buffer.from('11'),
      Buffer.from('realtime:room1'),
      Buffer.from('ping'),
      body,
    ]);
    const decoded = decodeFrame('2.0.0', frame, true);
    expect(decoded).toEqual({
      type: 'user_broadcast_push',
      push: {
        joinRef: '9',
        ref: '11',
        topic: 'realtime:room1',
        userEvent: 'ping',
        encoding: 'json',
        payload: body,
        metadata: {},
      },
    });
  });

  it('reads metadata and raw binary payloads in kind-3 frames', () => {
    const metadata = Buffer.from('{"persist":true}');
    const frame = Buffer.concat([
      Buffer.from([3, 1, 1, 1, 1, metadata.length, 0]),
      Buffer.from('1'),
      Buffer.from('2'),
      Buffer.from('t'),
      Buffer.from('e'),
      metadata,
      Buffer.from([0xff, 0x00]),
    ]);
    const decoded = decodeFrame('2.0.0', frame, true);
    if (decoded.type !== 'user_broadcast_push') throw new Error('expected a push');
    expect(decoded.push.encoding).toBe('binary');
    expect(decoded.push.metadata).toEqual({ persist: true });
    expect([...decoded.push.payload]).toEqual([0xff, 0x00]);
  });

  it('encodes kind-4 user broadcasts, with metadata only when given', () => {
    const plain = encodeUserBroadcast('realtime:room1', 'ping', 'json', Buffer.from('{"n":1}'));
    expect([...plain.subarray(0, 5)]).toEqual([4, 14, 4, 0, 1]);
    expect(plain.subarray(5).toString()).toBe('realtime:room1ping{"n":1}');
    const withMeta = encodeUserBroadcast('realtime:t', 'e', 'json', Buffer.from('{}'), '{"id":"x"}');
    expect([...withMeta.subarray(0, 5)]).toEqual([4, 10, 1, 10, 1]);
    expect(withMeta.subarray(5).toString()).toBe('realtime:te{"id":"x"}{}');
    expect(() => encodeUserBroadcast('x'.repeat(256), 'e', 'json', Buffer.alloc(0))).toThrow(RangeError);
  });

  it('refuses frames it cannot read: objects, short arrays, other binary kinds', () => {
    expect(() => decodeFrame('2.0.0', Buffer.from('{"topic":"t"}'), false)).toThrow(MalformedFrameError);
    expect(() => decodeFrame('2.0.0', Buffer.from('["1","2","t"]'), false)).toThrow(MalformedFrameError);
    expect(() => decodeFrame('2.0.0', Buffer.from([0, 1, 1, 1, 1]), true)).toThrow(MalformedFrameError);
    expect(() => decodeFrame('2.0.0', Buffer.from('not json'), false)).toThrow(MalformedFrameError);
  });
});

describe('serializer 1.0.0 frames', () => {
  it('encodes objects without join_ref and decodes the client objects', () => {
    const text = encodeMessage('1.0.0', {
      joinRef: '9',
      ref: '10',
      topic: 'realtime:room1',
      event: 'phx_reply',
      payload: { status: 'ok', response: {} },
    });
    expect(JSON.parse(text)).toEqual({
      topic: 'realtime:room1',
      event: 'phx_reply',
      payload: { status: 'ok', response: {} },
      ref: '10',
    });
    const decoded = decodeFrame(
      '1.0.0',
      Buffer.from('{"topic":"realtime:a","event":"phx_join","payload":{},"ref":"3","join_ref":"3"}'),
      false,
    );
    expect(decoded).toEqual({
      type: 'message',
      message: { joinRef: '3', ref: '3', topic: 'realtime:a', event: 'phx_join', payload: {} },
    });
  });

  it('has no binary frames and no arrays', () => {
    expect(() => decodeFrame('1.0.0', Buffer.from([3, 0, 0, 0, 0, 0, 1]), true)).toThrow(MalformedFrameError);
    expect(() => decodeFrame('1.0.0', Buffer.from('[null,"1","phoenix","heartbeat",{}]'), false)).toThrow(
      MalformedFrameError,
    );
  });
});
