// @vitest-environment happy-dom
import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import type { MatchForUser } from 'supabase-matchmaker';
import type { LocalSupabase } from 'supabase-matchmaker/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FindBuddy } from '../../examples/react/FindBuddy';
import { signedInClient, startQueueStack } from '../helpers/queueStack';

let stack: LocalSupabase;

beforeAll(async () => {
  stack = await startQueueStack();
  // The host app declares the criteria its searches may carry (docs/queue.md).
  await stack.db.query(`update matchmaker.settings set criteria_keys = '[{"key":"language"}]'`);
});
afterAll(async () => {
  await stack?.stop();
});
afterEach(() => {
  cleanup();
});

describe('examples/react/FindBuddy on the local stack (queue tier, unmodified supabase-js)', () => {
  it('two rendered components find each other: both show the partner and get the same match once', async () => {
    const alice = await signedInClient(stack);
    const bob = await signedInClient(stack);
    const onAlice = vi.fn<(match: MatchForUser) => void>();
    const onBob = vi.fn<(match: MatchForUser) => void>();
    const view = render(
      <>
        <section aria-label="alice">
          <FindBuddy supabase={alice.supabase} language="en" onMatched={onAlice} />
        </section>
        <section aria-label="bob">
          <FindBuddy supabase={bob.supabase} language="en" onMatched={onBob} />
        </section>
      </>,
    );
    const aliceSection = screen.getByLabelText('alice');
    const bobSection = screen.getByLabelText('bob');
    const findButton = (section: HTMLElement) =>
      waitFor(() => {
        const button = section.querySelector('button');
        expect(button?.textContent).toBe('Find a buddy');
        expect(button?.disabled).toBe(false);
        return button as HTMLButtonElement;
      });

    fireEvent.click(await findButton(aliceSection));
    await waitFor(() => expect(aliceSection.textContent).toContain('Searching'));
    fireEvent.click(await findButton(bobSection));

    await waitFor(() => expect(aliceSection.textContent).toBe(`Matched with ${bob.userId}`), {
      timeout: 15_000,
    });
    await waitFor(() => expect(bobSection.textContent).toBe(`Matched with ${alice.userId}`), {
      timeout: 15_000,
    });
    expect(onAlice).toHaveBeenCalledTimes(1);
    expect(onBob).toHaveBeenCalledTimes(1);
    expect(onAlice.mock.calls[0]?.[0].matchId).toBe(onBob.mock.calls[0]?.[0].matchId);

    view.unmount();
    await Promise.all([alice.disconnect(), bob.disconnect()]);
  });

  it('unmounting while searching withdraws the search in the database', async () => {
    const carol = await signedInClient(stack);
    const view = render(<FindBuddy supabase={carol.supabase} language="fr" />);
    await waitFor(() => expect(screen.getByRole('button').hasAttribute('disabled')).toBe(false));
    fireEvent.click(screen.getByRole('button'));
    await waitFor(() => expect(screen.getByRole('button').textContent).toContain('Searching'));
    const open = async () =>
      (
        await stack.db.query('select count(*)::int as n from matchmaker.tickets where user_id = $1', [
          carol.userId,
        ])
      ).rows[0].n as number;
    // The button reads 'Searching' from `starting` on; the ticket exists once the join RPC committed.
    await waitFor(async () => expect(await open()).toBe(1), { timeout: 10_000 });

    view.unmount();
    await waitFor(async () => expect(await open()).toBe(0), { timeout: 10_000 });
    await carol.disconnect();
  });
});
