import { describe, expect, it } from 'vitest';
import { serializeFrame } from '../../src/server/MatchmakingServer';
import {
  type MatchedFrame,
  SERVICE_PROTOCOL_VERSION,
  type ServerFrame,
} from '../../src/strategies/service/protocol';

/**
 * The node writes `matched` frames by hand (the match's JSON once per match, not once per frame). The frame below
 * is typed `Required<MatchedFrame>`, so a field added to the protocol's matched frame must be added here too, and
 * then this test fails until `serializeFrame` writes it.
 */
const match = Object.freeze({
  matchId: '8d1c5e7a-0a5e-4b3c-9b1e-2f6d3c4b5a69',
  userIds: ['user "a"', 'user\\b'] as const,
  createdAt: '2026-11-28T12:00:00.000Z',
  criteria: { language: 'en', note: 'quote " and \\ and \u2028' },
});

const full: Required<MatchedFrame> = {
  v: SERVICE_PROTOCOL_VERSION,
  type: 'matched',
  id: 'req-"1"',
  searchId: 'search\\1',
  ticketId: '3.0123456789abcdef0123456789abcdef',
  match,
};

describe('serializeFrame', () => {
  it('writes a matched frame with every field, as JSON.stringify does', () => {
    expect(JSON.parse(serializeFrame(full))).toEqual(JSON.parse(JSON.stringify(full)));
  });

  it('writes a pushed matched frame (no id) without an id', () => {
    const { id: _id, ...pushed } = full;
    const text = serializeFrame(pushed);
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(pushed)));
    expect(JSON.parse(text)).not.toHaveProperty('id');
  });

  it('reuses the match JSON across frames without mixing up their own fields', () => {
    const other: ServerFrame = {
      ...full,
      id: 'req-2',
      searchId: 'search-2',
      ticketId: '4.ffffffffffffffffffffffffffffffff',
    };
    expect(JSON.parse(serializeFrame(full))).toEqual(JSON.parse(JSON.stringify(full)));
    expect(JSON.parse(serializeFrame(other))).toEqual(JSON.parse(JSON.stringify(other)));
  });

  it('leaves every other frame to JSON.stringify', () => {
    const queued: ServerFrame = {
      v: SERVICE_PROTOCOL_VERSION,
      type: 'queued',
      searchId: 's',
      ticketId: full.ticketId,
    };
    expect(serializeFrame(queued)).toBe(JSON.stringify(queued));
  });
});
