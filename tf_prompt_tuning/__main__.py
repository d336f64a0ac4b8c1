from tf_prompt_tuning.cli import main

raise SystemExit(main())
