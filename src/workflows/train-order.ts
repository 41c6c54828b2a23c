/**
 * The pure ordering of a release train: who may start when, in which order members are reverted,
 * and the problems `rollgate validate` reports (a cycle named in order, an unknown or duplicate
 * service, a lock that would deadlock the train on itself). No I/O, no Temporal: the train
 * workflow and the spec validator share it, and test/train-order.unit.test.ts covers it.
 */

/** One member as the ordering sees it: its service, what it depends on, the shared dependency locks it takes. */
export interface TrainNode {
  service: string;
  dependsOn: string[];
  locks?: string[];
}

export interface OrderProblem {
  /** The field it concerns, e.g. `services[1].depends_on[0]`. */
  path: string;
  message: string;
}

/** Unknown and duplicate services and self-dependencies, each naming its field. */
export function referenceProblems(nodes: TrainNode[]): OrderProblem[] {
  const problems: OrderProblem[] = [];
  const first = new Map<string, number>();
  nodes.forEach((n, i) => {
    const seen = first.get(n.service);
    if (seen !== undefined) problems.push({ path: `services[${i}]`, message: `duplicate service "${n.service}" (also services[${seen}])` });
    else first.set(n.service, i);
  });
  const known = [...first.keys()];
  nodes.forEach((n, i) =>
    n.dependsOn.forEach((d, j) => {
      const path = `services[${i}].depends_on[${j}]`;
      if (d === n.service) problems.push({ path, message: `${n.service} depends on itself` });
      else if (!first.has(d)) problems.push({ path, message: `unknown service "${d}" (the train has ${known.join(', ')})` });
    }),
  );
  return problems;
}

/**
 * The first cycle in release order (`a -> b` = a is released before b, i.e. b depends on a), as
 * the list of services from one back to itself (`['orders', 'checkout', 'orders']`); undefined
 * when there is none. Unknown dependencies are ignored (referenceProblems reports them).
 */
export function findCycle(nodes: TrainNode[]): string[] | undefined {
  const dependents = dependentsMap(nodes);
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (s: string): string[] | undefined => {
    state.set(s, 'open');
    stack.push(s);
    for (const next of dependents.get(s) ?? []) {
      if (state.get(next) === 'open') return [...stack.slice(stack.indexOf(next)), next];
      if (!state.has(next)) {
        const found = visit(next);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(s, 'done');
    return undefined;
  };
  for (const n of nodes) {
    if (state.has(n.service)) continue;
    const found = visit(n.service);
    if (found) return found;
  }
  return undefined;
}

/** `orders -> checkout -> orders`. */
export function cycleText(cycle: string[]): string {
  return cycle.join(' -> ');
}

/**
 * Release order: every member after what it depends on; among members ready at the same time,
 * the order of the file. Throws on a cycle (validation refuses those before anything starts).
 */
export function releaseOrder(nodes: TrainNode[]): string[] {
  const done = new Set<string>();
  const order: string[] = [];
  while (order.length < nodes.length) {
    const next = nodes.find((n) => !done.has(n.service) && n.dependsOn.every((d) => done.has(d)));
    if (!next) throw new Error(`release train has a cycle: ${cycleText(findCycle(nodes) ?? [])}`);
    done.add(next.service);
    order.push(next.service);
  }
  return order;
}

/** Revert order: dependents first (the release order backwards). */
export function revertOrder(nodes: TrainNode[]): string[] {
  return releaseOrder(nodes).reverse();
}

/** Members that may start now: not started yet, and everything they depend on is promoted. */
export function startable(nodes: TrainNode[], started: ReadonlySet<string>, promoted: ReadonlySet<string>): string[] {
  return nodes.filter((n) => !started.has(n.service) && n.dependsOn.every((d) => promoted.has(d))).map((n) => n.service);
}

/**
 * Shared dependency locks that would deadlock the train on itself. A member releases its locks
 * when it is promoted and held (rollout.ts), so members in dependency order take a shared lock one
 * after the other. In lockstep every member waits at each wave for all the others, inside its
 * locks: two members sharing a lock would each wait for the other forever.
 */
export function lockDeadlocks(nodes: TrainNode[], lockstep: boolean): OrderProblem[] {
  if (!lockstep) return [];
  const problems: OrderProblem[] = [];
  const holder = new Map<string, { service: string; index: number }>();
  nodes.forEach((n, i) => {
    for (const lock of n.locks ?? []) {
      const other = holder.get(lock);
      if (!other) {
        holder.set(lock, { service: n.service, index: i });
        continue;
      }
      problems.push({
        path: `services[${i}]`,
        message: `${n.service} and ${other.service} (services[${other.index}]) both take the shared dependency lock ${lock}: in lockstep each would wait at a wave for the other, which holds the lock (a deadlock); drop lockstep or the shared dependency`,
      });
    }
  });
  return problems;
}

function dependentsMap(nodes: TrainNode[]): Map<string, string[]> {
  const known = new Set(nodes.map((n) => n.service));
  const out = new Map<string, string[]>();
  for (const n of nodes)
    for (const d of n.dependsOn) {
      if (!known.has(d) || d === n.service) continue;
      out.set(d, [...(out.get(d) ?? []), n.service]);
    }
  return out;
}
