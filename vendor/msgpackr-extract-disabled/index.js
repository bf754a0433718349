// msgpackr wraps require('msgpackr-extract') in try/catch: throwing selects its JavaScript decoder.
throw new Error('msgpackr-extract is disabled in postcopy-engine (see vendor/msgpackr-extract-disabled/package.json)');
