"""An exam: its questions read from files (`files`, `loading`), the prompts that ask them (`prompting`),
and the answers read (`parsing`, `negations`, `strict`) and scored (`scoring`). Used by evaluation and
by training's exam check alike; below every task."""
