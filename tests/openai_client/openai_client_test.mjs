// Drives flatfleet's OpenAI-compatible HTTP API with the official `openai` npm package: a real
// coordinator (--http-listen, an API token, a chat template) and a CPU worker with the built-in
// demo model. Uploads a batch file written for OpenAI's Batch API, polls it, downloads its
// output and error files and checks every line against OpenAI's documented schema; cancels and
// expires other batches; runs chat and completion calls streaming and not; checks the error
// shape and status of malformed calls; and splits `flatfleet results` with --errors-file.
//
// usage: node openai_client_test.mjs FLATFLEET_BINARY
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import OpenAI, { toFile } from 'openai';

const binary = process.argv[2];
const here = path.dirname(fileURLToPath(import.meta.url));
const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'flatfleet-openai-'));
const log = fs.openSync(path.join(workdir, 'processes.log'), 'a');
const token = 'test-token-0123456789abcdef';
const maxUploadBytes = 1 << 20;
const processes = [];

// Starts a flatfleet command and resolves with the stdout lines it prints first.
function start(args, linesWanted) {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', log] });
  processes.push(child);
  const lines = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[1]} did not start in time`)), 60000);
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      if (lines.length === linesWanted) {
        clearTimeout(timer);
        resolve(lines);
      }
    });
    child.on('exit', (code) => reject(new Error(`${args[1]} exited with ${code}`)));
  });
}

function stopAll() {
  for (const child of processes.reverse()) {
    if (child.exitCode === null) child.kill('SIGTERM');
  }
}

const isInt = (value) => Number.isInteger(value);
const isNullOr = (value, check) => value === null || check(value);

// The batch object as OpenAI's API reference defines it.
function checkBatchObject(batch) {
  assert.equal(typeof batch.id, 'string');
  assert.equal(batch.object, 'batch');
  assert.ok(['/v1/chat/completions', '/v1/completions'].includes(batch.endpoint), batch.endpoint);
  assert.ok(batch.errors === null || (batch.errors.object === 'list' &&
                                      Array.isArray(batch.errors.data)), JSON.stringify(batch));
  assert.equal(typeof batch.input_file_id, 'string');
  assert.equal(typeof batch.completion_window, 'string');
  assert.ok(['validating', 'failed', 'in_progress', 'finalizing', 'completed', 'expired',
             'cancelling', 'cancelled'].includes(batch.status), batch.status);
  assert.ok(isNullOr(batch.output_file_id, (v) => typeof v === 'string'));
  assert.ok(isNullOr(batch.error_file_id, (v) => typeof v === 'string'));
  assert.ok(isInt(batch.created_at));
  for (const key of ['in_progress_at', 'expires_at', 'finalizing_at', 'completed_at', 'failed_at',
                     'expired_at', 'cancelling_at', 'cancelled_at']) {
    assert.ok(key in batch, key);
    assert.ok(isNullOr(batch[key], isInt), `${key}: ${batch[key]}`);
  }
  const counts = batch.request_counts;
  assert.ok(isInt(counts.total) && isInt(counts.completed) && isInt(counts.failed));
  assert.ok(counts.completed + counts.failed <= counts.total);
  assert.ok(batch.metadata === null || typeof batch.metadata === 'object');
}

// A line of a batch output file (a success) as OpenAI documents it.
function checkOutputLine(line, endpoint) {
  assert.equal(typeof line.id, 'string');
  assert.equal(typeof line.custom_id, 'string');
  assert.equal(line.error, null);
  assert.equal(line.response.status_code, 200);
  assert.equal(typeof line.response.request_id, 'string');
  const body = line.response.body;
  assert.equal(typeof body.id, 'string');
  assert.ok(isInt(body.created) && body.created > 1.7e9, `created: ${body.created}`);
  assert.equal(body.model, 'demo');
  assert.equal(body.object, endpoint === '/v1/chat/completions' ? 'chat.completion'
                                                                 : 'text_completion');
  assert.ok(Array.isArray(body.choices) && body.choices.length === 1);
  const choice = body.choices[0];
  assert.equal(choice.index, 0);
  assert.ok(['stop', 'length'].includes(choice.finish_reason), choice.finish_reason);
  if (endpoint === '/v1/chat/completions') {
    assert.equal(choice.message.role, 'assistant');
    assert.equal(typeof choice.message.content, 'string');
  } else {
    assert.equal(typeof choice.text, 'string');
  }
  const usage = body.usage;
  assert.ok(isInt(usage.prompt_tokens) && usage.prompt_tokens > 0);
  assert.ok(isInt(usage.completion_tokens) && usage.completion_tokens > 0);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

function parseLines(text) {
  return text.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

async function waitForStatus(client, id, statuses, seconds = 120) {
  const deadline = Date.now() + seconds * 1000;
  while (true) {
    const batch = await client.batches.retrieve(id);
    checkBatchObject(batch);
    if (statuses.includes(batch.status)) return batch;
    assert.ok(Date.now() < deadline, `batch ${id} still ${batch.status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function expectApiError(promise, status, check = () => {}) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof OpenAI.APIError, String(error));
    assert.equal(error.status, status, `${error.status}: ${error.message}`);
    assert.equal(typeof error.error.message, 'string');
    assert.equal(typeof error.error.type, 'string');
    assert.ok('param' in error.error && 'code' in error.error, JSON.stringify(error.error));
    check(error);
    return;
  }
  assert.fail(`expected HTTP ${status}`);
}

async function main() {
  const tokenFile = path.join(workdir, 'tokens');
  fs.writeFileSync(tokenFile, `${token}\n`);
  const [workerLine] = await start(['serve', 'worker', '--listen', '127.0.0.1:0'], 1);
  const workerAddress = workerLine.replace('listening on ', '');
  const [grpcLine, httpLine] = await start([
    'serve', 'coordinator', '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0',
    '--db', path.join(workdir, 'jobs.db'), '--worker', workerAddress, '--model',
    'demo=builtin:demo', '--chat-template', path.join(here, 'chat_template.jinja'),
    '--api-token-file', tokenFile, '--max-upload-bytes', String(maxUploadBytes)], 2);
  const grpcAddress = grpcLine.replace('listening on ', '');
  assert.match(httpLine, /^http api on http:\/\/127\.0\.0\.1:\d+$/);
  const baseURL = `${httpLine.replace('http api on ', '')}/v1`;
  const client = new OpenAI({ apiKey: token, baseURL, maxRetries: 0, timeout: 60000 });

  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['demo']);
  assert.equal(models.data[0].object, 'model');

  // Interactive calls, once the worker group is up (the first call may find it loading).
  let chat;
  for (let attempt = 0; ; ++attempt) {
    try {
      chat = await client.chat.completions.create({
        model: 'demo', messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 12,
        temperature: 0, frequency_penalty: 0, logprobs: false, n: 1 });
      break;
    } catch (error) {
      assert.ok(attempt < 100 && error.status === 503, String(error));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  assert.equal(chat.object, 'chat.completion');
  assert.match(chat.id, /^chatcmpl-/);
  assert.equal(chat.choices[0].message.role, 'assistant');
  assert.ok(chat.choices[0].message.content.length > 0);
  assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);
  const chatStream = await client.chat.completions.create({
    model: 'demo', messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 12,
    temperature: 0, stream: true, stream_options: { include_usage: true } });
  let streamed = '';
  let finish = null;
  let streamUsage = null;
  let contentChunks = 0;
  for await (const chunk of chatStream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) streamUsage = chunk.usage;
    for (const choice of chunk.choices) {
      streamed += choice.delta.content ?? '';
      if (choice.delta.content) contentChunks += 1;
      finish = choice.finish_reason ?? finish;
    }
  }
  // Greedy decoding: the stream carries the same text as the plain call.
  assert.equal(streamed, chat.choices[0].message.content);
  assert.equal(finish, chat.choices[0].finish_reason);
  assert.deepEqual(streamUsage, chat.usage);
  // Token by token as the worker releases text, not all at once.
  assert.ok(contentChunks > 1, `${contentChunks} content chunks`);

  const completion = await client.completions.create({
    model: 'demo', prompt: 'Once upon a time', max_tokens: 10, temperature: 0 });
  assert.equal(completion.object, 'text_completion');
  assert.ok(completion.choices[0].text.length > 0);
  const completionStream = await client.completions.create({
    model: 'demo', prompt: 'Once upon a time', max_tokens: 10, temperature: 0, stream: true });
  let streamedText = '';
  for await (const chunk of completionStream) streamedText += chunk.choices[0]?.text ?? '';
  assert.equal(streamedText, completion.choices[0].text);
  // Seeded sampling, and a stop string from the middle of the greedy text (several tokens, so
  // it straddles chunks): the chunks put together are the plain call's text.
  const longer = await client.completions.create({
    model: 'demo', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
  const chars = [...longer.choices[0].text];
  assert.ok(chars.length >= 4, longer.choices[0].text);
  const stop = chars.slice(1, 3).join('');
  for (const params of [{ temperature: 0.9, seed: 7 }, { temperature: 0, stop: [stop] },
                        { temperature: 0.9, seed: 7, stop: [stop] }]) {
    const request = { model: 'demo', prompt: 'Once upon a time', max_tokens: 24, ...params };
    const plain = await client.completions.create(request);
    const stream = await client.completions.create({ ...request, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    assert.equal(text, plain.choices[0].text, JSON.stringify(params));
    if (params.stop) assert.ok(!text.includes(stop), JSON.stringify(params));
  }

  // Malformed calls: OpenAI's error object with the right status.
  await expectApiError(client.chat.completions.create({ model: 'nope', messages: [] }), 404,
                       (e) => assert.equal(e.code, 'model_not_found'));
  await expectApiError(client.chat.completions.create({ model: 'demo' }), 400,
                       (e) => assert.equal(e.param, 'messages'));
  await expectApiError(client.completions.create({ model: 'demo', prompt: 'x', max_tokens: -1 }),
                       400, (e) => assert.equal(e.param, 'max_tokens'));
  await expectApiError(client.batches.retrieve('batch_000000000000000000000000'), 404);
  await expectApiError(client.files.retrieve('file-000000000000000000000000'), 404);
  await expectApiError(new OpenAI({ apiKey: 'wrong', baseURL, maxRetries: 0 }).models.list(), 401);
  const raw = async (method, route, body, headers = {}) => {
    const response = await fetch(`${baseURL}${route}`, {
      method, body, headers: { authorization: `Bearer ${token}`, ...headers } });
    const json = await response.json();
    assert.equal(typeof json.error.message, 'string', JSON.stringify(json));
    assert.ok('type' in json.error && 'param' in json.error && 'code' in json.error);
    return response.status;
  };
  assert.equal(await raw('POST', '/chat/completions', '{not json',
                         { 'content-type': 'application/json' }), 400);
  assert.equal(await raw('DELETE', '/batches', undefined), 405);
  assert.equal(await raw('GET', '/nowhere', undefined), 404);
  assert.equal(await raw('POST', '/batches', '{"endpoint": "/v1/chat/completions"}',
                         { 'content-type': 'application/json' }), 400);

  // An oversize upload is refused before it is stored.
  const filesBefore = (await client.files.list()).data.length;
  await expectApiError(client.files.create({
    file: await toFile(Buffer.alloc(maxUploadBytes + 4096, 'x'), 'big.jsonl'), purpose: 'batch' }),
  413);
  assert.equal((await client.files.list()).data.length, filesBefore);

  // A batch file written for OpenAI's Batch API, unchanged: method/url/body and default-valued
  // extra fields; one line that cannot run.
  const chatLines = [];
  for (let i = 0; i < 6; ++i) {
    chatLines.push(JSON.stringify({
      custom_id: `chat-${i}`, method: 'POST', url: '/v1/chat/completions',
      body: { model: 'demo', messages: [{ role: 'system', content: 'You are terse.' },
                                        { role: 'user', content: `Question ${i}` }],
              max_tokens: 8, temperature: 0, top_p: 1, n: 1, frequency_penalty: 0,
              presence_penalty: 0, logprobs: false, stream: false, user: 'u1' } }));
  }
  chatLines.push(JSON.stringify({ custom_id: 'chat-bad', method: 'POST',
                                  url: '/v1/chat/completions',
                                  body: { model: 'demo', messages: 'not a list' } }));
  const input = await client.files.create({
    file: await toFile(Buffer.from(chatLines.join('\n') + '\n'), 'chat.jsonl'), purpose: 'batch' });
  assert.equal(input.object, 'file');
  assert.equal(input.purpose, 'batch');
  assert.equal(input.filename, 'chat.jsonl');
  assert.equal(input.bytes, Buffer.byteLength(chatLines.join('\n') + '\n'));
  assert.equal((await client.files.retrieve(input.id)).bytes, input.bytes);
  assert.equal(await (await client.files.content(input.id)).text(), chatLines.join('\n') + '\n');

  const created = await client.batches.create({
    input_file_id: input.id, endpoint: '/v1/chat/completions', completion_window: '24h',
    metadata: { purpose: 'openai-client-test' } });
  checkBatchObject(created);
  assert.equal(created.input_file_id, input.id);
  assert.deepEqual(created.metadata, { purpose: 'openai-client-test' });
  assert.ok(created.expires_at - created.created_at >= 24 * 3600 - 1);
  const done = await waitForStatus(client, created.id, ['completed']);
  assert.deepEqual(done.request_counts, { total: 7, completed: 6, failed: 1 });
  assert.ok(isInt(done.completed_at));
  const output = parseLines(await (await client.files.content(done.output_file_id)).text());
  assert.deepEqual(output.map((l) => l.custom_id).sort(), chatLines.slice(0, 6)
    .map((l) => JSON.parse(l).custom_id).sort());
  for (const line of output) checkOutputLine(line, '/v1/chat/completions');
  assert.equal(new Set(output.map((l) => l.id)).size, output.length);
  const errors = parseLines(await (await client.files.content(done.error_file_id)).text());
  assert.equal(errors.length, 1);
  assert.equal(errors[0].custom_id, 'chat-bad');
  assert.equal(errors[0].error, null);
  assert.equal(errors[0].response.status_code, 400);
  assert.match(errors[0].response.body.error.message, /messages/);
  assert.equal(errors[0].response.body.error.code, 'invalid_request');

  // The CLI splits the same results with --errors-file.
  const cliOut = path.join(workdir, 'cli_output.jsonl');
  const cliErrors = path.join(workdir, 'cli_errors.jsonl');
  execFileSync(binary, ['results', done.id, '-o', cliOut, '--errors-file', cliErrors,
                        '--coordinator', grpcAddress, '--api-token-file', tokenFile]);
  assert.deepEqual(parseLines(fs.readFileSync(cliOut, 'utf8')).map((l) => l.id).sort(),
                   output.map((l) => l.id).sort());
  assert.deepEqual(parseLines(fs.readFileSync(cliErrors, 'utf8')), errors);

  // Cancel a batch of many requests: every request ends in exactly one file.
  const manyLines = [];
  for (let i = 0; i < 400; ++i) {
    manyLines.push(JSON.stringify({ custom_id: `c-${i}`, method: 'POST', url: '/v1/completions',
                                    body: { model: 'demo', prompt: `Story ${i}`, max_tokens: 64 } }));
  }
  const manyFile = await client.files.create({
    file: await toFile(Buffer.from(manyLines.join('\n')), 'many.jsonl'), purpose: 'batch' });
  const toCancel = await client.batches.create({
    input_file_id: manyFile.id, endpoint: '/v1/completions', completion_window: '24h' });
  const cancelling = await client.batches.cancel(toCancel.id);
  assert.ok(['cancelling', 'cancelled'].includes(cancelling.status), cancelling.status);
  const cancelled = await waitForStatus(client, toCancel.id, ['cancelled']);
  assert.ok(isInt(cancelled.cancelled_at));
  const cancelledErrors = parseLines(
    await (await client.files.content(cancelled.error_file_id)).text());
  assert.ok(cancelledErrors.some((l) => l.error?.code === 'batch_cancelled'));
  const cancelledOutput = cancelled.output_file_id === null ? []
    : parseLines(await (await client.files.content(cancelled.output_file_id)).text());
  for (const line of cancelledOutput) checkOutputLine(line, '/v1/completions');
  const answered = [...cancelledOutput, ...cancelledErrors].map((l) => l.custom_id).sort();
  assert.deepEqual(answered, manyLines.map((l) => JSON.parse(l).custom_id).sort());
  await expectApiError(client.batches.cancel(done.id), 409);

  // A completion window that passes: unfinished requests are written to the error file.
  const toExpire = await client.batches.create({
    input_file_id: manyFile.id, endpoint: '/v1/completions', completion_window: '1s' });
  const expired = await waitForStatus(client, toExpire.id, ['expired'], 60);
  assert.ok(isInt(expired.expired_at));
  const expiredErrors = parseLines(
    await (await client.files.content(expired.error_file_id)).text());
  assert.ok(expiredErrors.length > 0 && expiredErrors.every(
    (l) => l.response === null && l.error.code === 'batch_expired'), JSON.stringify(expiredErrors[0]));
  const expiredOutput = expired.output_file_id === null ? []
    : parseLines(await (await client.files.content(expired.output_file_id)).text());
  assert.equal(expiredOutput.length + expiredErrors.length, manyLines.length);

  // Pagination, newest first.
  const page = await client.batches.list({ limit: 2 });
  assert.deepEqual(page.data.map((b) => b.id), [toExpire.id, toCancel.id]);
  assert.equal(page.has_more, true);
  const next = await client.batches.list({ limit: 2, after: toCancel.id });
  assert.deepEqual(next.data.map((b) => b.id), [created.id]);
  assert.equal(next.has_more, false);

  // Files can be deleted; the batch keeps its own result files.
  assert.deepEqual(await client.files.del(input.id), { id: input.id, object: 'file', deleted: true });
  await expectApiError(client.files.retrieve(input.id), 404);
  assert.equal((await client.batches.retrieve(created.id)).status, 'completed');
}

try {
  await main();
  console.log('openai client test passed');
} finally {
  stopAll();
}
