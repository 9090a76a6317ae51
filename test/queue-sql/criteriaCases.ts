/**
 * Criteria cases shared by the SQL tests of the criteria fast paths (20261128000500's function, 20261128000800's
 * inline test): declared key sets, and inputs at and around every rule of the general normalisation (types,
 * '*' and 'any', the 64-character limit in characters, undeclared keys, non-objects).
 */
export const CRITERIA_KEY_SETS: readonly Record<string, string>[][] = [
  [],
  [{ key: 'room' }],
  [{ key: 'room' }, { key: 'lang', match: 'exact' }],
  [{ key: 'room', default: 'r1' }],
  [{ key: 'room' }, { key: 'tz', match: 'flexible' }],
  [{ key: 'room' }, { key: 'tz', match: 'flexible', widen_after: '10 seconds' }],
];
export const CRITERIA_INPUTS: readonly string[] = [
  '{}',
  '{"room":"a"}',
  '{"room":"a","lang":"en"}',
  '{"lang":"en"}',
  '{"room":5}',
  '{"room":true}',
  '{"room":null}',
  '{"room":"*"}',
  '{"room":"any"}',
  '{"room":"ANY"}',
  '{"room":""}',
  `{"room":"${'x'.repeat(65)}"}`,
  `{"room":"${'x'.repeat(64)}"}`,
  `{"room":"${'é'.repeat(64)}"}`,
  `{"room":"${'é'.repeat(65)}"}`,
  '{"room":"a\\nb"}',
  '{"room":["a"]}',
  '{"other":"a"}',
  '{"room":{"a":1}}',
  '{"tz":"*"}',
  '{"room":"a","tz":"+01"}',
  '[]',
  '"room"',
  'null',
];
