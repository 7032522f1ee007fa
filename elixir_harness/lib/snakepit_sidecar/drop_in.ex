defmodule SnakepitSidecar.DropIn do
  @moduledoc """
  Makes a module a drop-in replacement for `Snakepit.Bridge.SessionStore`:

      defmodule Snakepit.Bridge.SessionStore do
        @moduledoc "The SessionStore, served by the Python sidecar."
        use SnakepitSidecar.DropIn
      end

  The module gets the original's functions, arities and return terms (`SnakepitSidecar.API`),
  `start_link/0,1` registering the module's own name (so a second start returns
  `{:error, {:already_started, pid}}`), and `child_spec/1`. Sessions and variables come back as
  `%Snakepit.Bridge.Session{}` and `%Snakepit.Bridge.Variables.Variable{}`.

  ## Struct modules

  Code written for Snakepit pattern-matches `%Snakepit.Bridge.Session{}`; that needs the module to
  exist at compile time. `use SnakepitSidecar.DropIn` therefore looks for
  `Snakepit.Bridge.Session` and `Snakepit.Bridge.Variables.Variable` when the using module is
  compiled (`Code.ensure_compiled/1`, which also waits for modules being compiled in the same
  project):

    * if they exist (the real Snakepit is a dependency, or the project defines them), they are used
      as they are: the sidecar's terms name them in `__struct__` and carry the contract's fields;
    * if not, they are defined right there as plain structs with the contract's fields and
      defaults (`SnakepitSidecar.Structs`). They have no functions (the real `Session.new/2`,
      `Session.put_program/3`... are not recreated).

  Options of `use`: `:session_struct` and `:variable_struct` to name other modules (default
  `Snakepit.Bridge.Session` and `Snakepit.Bridge.Variables.Variable`).

  Start options given to `start_link/1` are those of `SnakepitSidecar.SessionStore`; `:name`
  defaults to the using module.
  """

  defmacro __using__(opts) do
    session_struct = Keyword.get(opts, :session_struct, Snakepit.Bridge.Session)
    variable_struct = Keyword.get(opts, :variable_struct, Snakepit.Bridge.Variables.Variable)

    quote location: :keep do
      SnakepitSidecar.Structs.ensure_defined(
        unquote(session_struct),
        SnakepitSidecar.Structs.session_fields()
      )

      SnakepitSidecar.Structs.ensure_defined(
        unquote(variable_struct),
        SnakepitSidecar.Structs.variable_fields()
      )

      use SnakepitSidecar.API, default_server: __MODULE__

      @doc """
      Starts the store registered as `#{inspect(__MODULE__)}` (options: see
      `SnakepitSidecar.Options`). `{:error, {:already_started, pid}}` when it runs already.
      """
      @spec start_link(keyword()) :: GenServer.on_start()
      def start_link(opts \\ []) do
        SnakepitSidecar.SessionStore.start_link(opts,
          name: __MODULE__,
          session_struct: unquote(session_struct),
          variable_struct: unquote(variable_struct)
        )
      end
    end
  end
end
