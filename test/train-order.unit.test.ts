import { cycleText, findCycle, lockDeadlocks, referenceProblems, releaseOrder, revertOrder, startable } from '../src/workflows/train-order';

const node = (service: string, dependsOn: string[] = [], locks: string[] = []) => ({ service, dependsOn, locks });
const chain = [node('orders'), node('checkout', ['orders']), node('web', ['checkout'])];

test('release order puts every member after what it depends on; reverts go dependents first', () => {
  // Listed out of order on purpose: the order comes from depends_on, ties from the file.
  const nodes = [node('web', ['checkout']), node('search'), node('checkout', ['orders']), node('orders')];
  expect(releaseOrder(nodes)).toEqual(['search', 'orders', 'checkout', 'web']);
  expect(revertOrder(nodes)).toEqual(['web', 'checkout', 'orders', 'search']);
  expect(revertOrder(chain)).toEqual(['web', 'checkout', 'orders']);
});

test('startable: independent members at once, a dependent only once everything it depends on is promoted', () => {
  const nodes = [node('orders'), node('search'), node('checkout', ['orders']), node('web', ['checkout', 'search'])];
  expect(startable(nodes, new Set(), new Set())).toEqual(['orders', 'search']);
  expect(startable(nodes, new Set(['orders', 'search']), new Set(['orders']))).toEqual(['checkout']);
  expect(startable(nodes, new Set(['orders', 'search', 'checkout']), new Set(['orders', 'checkout']))).toEqual([]);
  expect(startable(nodes, new Set(['orders', 'search', 'checkout']), new Set(['orders', 'checkout', 'search']))).toEqual(['web']);
});

test('a cycle is named in order, from one member back to itself', () => {
  expect(findCycle(chain)).toBeUndefined();
  const two = [node('orders', ['checkout']), node('checkout', ['orders'])];
  expect(cycleText(findCycle(two)!)).toBe('orders -> checkout -> orders');
  const three = [node('web', ['checkout']), node('orders', ['web']), node('checkout', ['orders']), node('search')];
  expect(cycleText(findCycle(three)!)).toBe('web -> orders -> checkout -> web');
  // A cycle behind an acyclic prefix is still found, and only its members are named.
  const tail = [node('base'), node('a', ['base', 'b']), node('b', ['a'])];
  expect(cycleText(findCycle(tail)!)).toBe('a -> b -> a');
  expect(() => releaseOrder(two)).toThrow('orders -> checkout -> orders');
});

test('unknown, duplicate and self dependencies name their field', () => {
  expect(referenceProblems(chain)).toEqual([]);
  expect(referenceProblems([node('orders'), node('checkout', ['order']), node('orders', ['checkout']), node('web', ['web'])])).toEqual([
    { path: 'services[2]', message: 'duplicate service "orders" (also services[0])' },
    { path: 'services[1].depends_on[0]', message: 'unknown service "order" (the train has orders, checkout, web)' },
    { path: 'services[3].depends_on[0]', message: 'web depends on itself' },
  ]);
});

test('a shared lock deadlocks a lockstep train, naming both members and the lock; in dependency order it does not', () => {
  const nodes = [node('orders', [], ['payments-db']), node('checkout', ['orders'], ['payments-db', 'search-index']), node('web')];
  expect(lockDeadlocks(nodes, false)).toEqual([]);
  const problems = lockDeadlocks(nodes, true);
  expect(problems).toHaveLength(1);
  expect(problems[0].path).toBe('services[1]');
  expect(problems[0].message).toMatch(
    /^checkout and orders \(services\[0\]\) both take the shared dependency lock payments-db: in lockstep/,
  );
});
