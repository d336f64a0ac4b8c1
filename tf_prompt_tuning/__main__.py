from tf_prompt_tuning.app.cli import main

raise SystemExit(main())
