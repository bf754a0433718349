/**
 * Effects are named, never run, by the lifecycle machines: a transition asks for
 * `{ type: 'startFaultThread' }` and the engine, which owns every fd, thread and
 * table, carries it out. XState's `setup` still wants an implementation per
 * action name, so each effect is declared with this inert placeholder.
 *
 * The types below read each machine's effects and state names off its `setup`, so
 * the engine's handler table and state predicates cannot drift from the machines.
 */
import type { StateMachine } from 'xstate';

/** Pure: returns an action implementation that does nothing; only its name and params matter. */
export function effect<TParams extends Record<string, unknown> | undefined = undefined>() {
  return (_args: unknown, _params: TParams): void => {};
}

/** An effect a transition asks the engine to carry out, e.g. `{ type: 'startFaultThread' }`. */
export interface Effect {
  readonly type: string;
  readonly params?: Readonly<Record<string, unknown>>;
}

type IsAny<T> = 0 extends 1 & T ? true : false;

/** The machine's action objects as `setup({ actions })` declared them: `{ type, params }`. */
type ActionOf<M> =
  M extends StateMachine<any, any, any, any, infer TAction, any, any, any, any, any, any, any, any, any, any> ? TAction : never;

/** The machine's state value type, e.g. `'QUIT' | { CREATED: 'loading' | ... }`. */
type StateValueOf<M> =
  M extends StateMachine<any, any, any, any, any, any, any, infer TValue, any, any, any, any, any, any, any> ? TValue : never;

/**
 * The effects of one machine as a discriminated union on `type`, one member per action
 * name. Effects declared `effect()` carry no params (`setup` types them
 * `Record<string, unknown> | undefined`, hence the `undefined extends` test); those
 * declared `effect<{ reason: string }>()` carry exactly those params. For a machine
 * whose type is unknown (`AnyStateMachine`), the loose `Effect`.
 */
export type EffectOf<M> =
  IsAny<ActionOf<M>> extends true
    ? Effect
    : ActionOf<M> extends infer TAction
      ? TAction extends { type: infer TType extends string; params: infer TParams }
        ? undefined extends TParams
          ? { readonly type: TType; readonly params?: undefined }
          : { readonly type: TType; readonly params: Readonly<TParams> }
        : never
      : never;

/** Pure type: a state value flattened to dotted names: 'LISTENING', 'CREATED.loading'. */
type Flatten<V> = V extends string ? V : { [K in keyof V & string]: `${K}.${Flatten<V[K]>}` }[keyof V & string];

/** Every state of the machine as `stateName` spells it, e.g. 'NONE.idle' | 'CREATED.loading' | 'QUIT'. */
export type StateNameOf<M> = IsAny<StateValueOf<M>> extends true ? string : Flatten<StateValueOf<M>>;

/** The machine's top-level states, e.g. 'NONE' | 'CREATED' | 'QUIT'. */
export type TopStateOf<M> =
  IsAny<StateValueOf<M>> extends true
    ? string
    : StateValueOf<M> extends infer TValue
      ? TValue extends string
        ? TValue
        : keyof TValue & string
      : never;
