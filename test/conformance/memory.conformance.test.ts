import { Matchmaker, MemoryMatchmakingHub, MemoryStrategy } from '../../src/index';
import { runConformanceSuite } from './suite';

let nextUser = 0;

runConformanceSuite('memory', {
  async setup() {
    const hub = new MemoryMatchmakingHub();
    return {
      async createMatchmaker(userId) {
        return new Matchmaker(new MemoryStrategy({ hub, userId }));
      },
      async newUserId() {
        nextUser += 1;
        return `user-${nextUser}`;
      },
      async teardown() {
        hub.clear();
      },
    };
  },
});
