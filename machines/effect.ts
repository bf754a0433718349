/**
 * Effects are named, never run, by the lifecycle machines: a transition asks for
 * `{ type: 'startFaultThread' }` and the engine, which owns every fd, thread and
 * table, carries it out. XState's `setup` still wants an implementation per
 * action name, so each effect is declared with this inert placeholder.
 */

/** Pure: returns an action implementation that does nothing; only its name and params matter. */
export function effect<TParams extends Record<string, unknown> | undefined = undefined>() {
  return (_args: unknown, _params: TParams): void => {};
}
